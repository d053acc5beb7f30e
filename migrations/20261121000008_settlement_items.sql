-- Own payers and the development faucet in the settlement schema.
--
-- settlement.items: the captures of our own agents' payments, queued until the batch settlement
-- worker (not built yet) nets them by (network, payer, payee) into one transfer per group. One
-- row per payment (the settle path inserts it idempotently), and one per authorization.
CREATE TABLE settlement.items (
  payment_id    uuid PRIMARY KEY,
  network       text NOT NULL,
  token         text NOT NULL CHECK (token ~ '^0x[0-9a-f]{40}$'),
  payer         text NOT NULL CHECK (payer ~ '^0x[0-9a-f]{40}$'),
  payee         text NOT NULL CHECK (payee ~ '^0x[0-9a-f]{40}$'),
  amount        numeric(78,0) NOT NULL CHECK (amount > 0),
  -- The authorization's validBefore (Unix seconds): after it, and with the nonce unused on
  -- chain, the authorization can no longer be paid, and the item may be netted.
  valid_before  bigint NOT NULL,
  nonce         text NOT NULL CHECK (nonce ~ '^0x[0-9a-f]{64}$'),
  captured_at   timestamptz NOT NULL,
  provider      uuid NOT NULL,
  -- queued -> batched -> settled; settled_externally when the provider submitted the original
  -- authorization on chain itself.
  state         text NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'batched', 'settled', 'settled_externally')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  -- An authorization is paid at most once.
  UNIQUE (network, payer, nonce)
);
COMMENT ON TABLE settlement.items IS
  'Queued captures of our own agents'' payments, netted later by the batch settlement worker (not built yet).';
-- What the netting worker groups.
CREATE INDEX items_queued ON settlement.items (network, payer, payee) WHERE state = 'queued';

-- Chain transactions that are not settlements: the development faucet's mints, sent from the
-- relayers with the same nonce allocation and stored before broadcast; `deposit` is what the
-- ledger records once the mint is mined (owner, agent, asset, amount, and the recipient).
ALTER TABLE settlement.chain_txs ALTER COLUMN settlement_id DROP NOT NULL;
ALTER TABLE settlement.chain_txs
  ADD COLUMN purpose text NOT NULL DEFAULT 'settlement' CHECK (purpose IN ('settlement', 'faucet')),
  ADD COLUMN deposit jsonb;
ALTER TABLE settlement.chain_txs
  ADD CONSTRAINT chain_txs_settlement_iff_purpose
    CHECK ((purpose = 'settlement') = (settlement_id IS NOT NULL)),
  ADD CONSTRAINT chain_txs_deposit_iff_faucet
    CHECK ((purpose = 'faucet') = (deposit IS NOT NULL));
