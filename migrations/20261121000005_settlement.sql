-- The settlement service's schema: settlements of outside payers' authorizations on chain, the
-- chain transactions that carry them, and each relayer's next nonce. Every settlement row is
-- written, and every transaction signed and stored, before anything is broadcast.
SELECT public.awx_bus_install('settlement');

CREATE TABLE settlement.settlements (
  id                  uuid PRIMARY KEY,
  network             text NOT NULL,
  payer               text NOT NULL CHECK (payer ~ '^0x[0-9a-f]{40}$'),
  nonce               text NOT NULL CHECK (nonce ~ '^0x[0-9a-f]{64}$'),
  token               text NOT NULL,
  payee               text NOT NULL,
  value               numeric(78,0) NOT NULL,
  -- SHA-256 of the authorization and signature: another payload for the same nonce is refused.
  authorization_hash  bytea NOT NULL,
  provider            uuid,
  payload             jsonb NOT NULL,
  requirements        jsonb NOT NULL,
  -- planned -> signed -> broadcast -> confirmed | failed
  state               text NOT NULL CHECK (state IN ('planned', 'signed', 'broadcast', 'confirmed', 'failed')),
  tx_hash             text,
  error_reason        text,
  error_message       text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (network, payer, nonce)
);

CREATE TABLE settlement.relayer_nonces (
  chain_id    bigint NOT NULL,
  relayer     text NOT NULL,
  next_nonce  bigint NOT NULL CHECK (next_nonce >= 0),
  PRIMARY KEY (chain_id, relayer)
);

CREATE TABLE settlement.chain_txs (
  id                  uuid PRIMARY KEY,
  settlement_id       uuid NOT NULL REFERENCES settlement.settlements (id),
  chain_id            bigint NOT NULL,
  relayer             text NOT NULL,
  nonce               bigint NOT NULL,
  raw                 bytea NOT NULL,
  hash                text NOT NULL UNIQUE,
  state               text NOT NULL CHECK (state IN ('signed', 'broadcast', 'confirmed', 'failed')),
  broadcast_attempts  integer NOT NULL DEFAULT 0,
  last_error          text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  -- A relayer's nonce carries one transaction.
  UNIQUE (chain_id, relayer, nonce)
);
CREATE INDEX chain_txs_in_flight ON settlement.chain_txs (updated_at) WHERE state IN ('signed', 'broadcast');
