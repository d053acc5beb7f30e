-- Withdrawals: USDC moved from an agent's wallet to an outside address.
--
-- The settlement service stores a withdrawal (state 'pending') before anything else; the policy
-- service approves it and the ledger holds its amount; the signer signs one EIP-3009 transfer
-- from the agent's wallet (kind 'withdrawal', its id the withdrawal's); the transfer becomes a
-- net transfer of kind 'withdrawal' in state 'signed', which the batch worker submits like any
-- other (stored before broadcast, fee bumps, confirmation depth). Once confirmed, the ledger
-- captures the hold.
--
-- withdrawal: pending -> signed -> confirmed | failed (flagged transfer) | rejected (nothing held)

CREATE TABLE settlement.withdrawals (
  -- Also the net transfer's id and the ledger hold's id.
  id            uuid PRIMARY KEY,
  owner         uuid NOT NULL,
  agent         uuid NOT NULL,
  network       text NOT NULL,
  chain_id      bigint NOT NULL CHECK (chain_id > 0),
  token         text NOT NULL CHECK (token ~ '^0x[0-9a-f]{40}$'),
  decimals      smallint NOT NULL CHECK (decimals BETWEEN 0 AND 36),
  sender        text NOT NULL CHECK (sender ~ '^0x[0-9a-f]{40}$'),
  recipient     text NOT NULL CHECK (recipient ~ '^0x[0-9a-f]{40}$'),
  amount        numeric(78,0) NOT NULL CHECK (amount > 0),
  -- The EIP-3009 authorization, fixed when the withdrawal is stored, so a resumed signing signs
  -- the same one.
  nonce         text NOT NULL UNIQUE CHECK (nonce ~ '^0x[0-9a-f]{64}$'),
  valid_before  bigint NOT NULL,
  state         text NOT NULL CHECK (state IN ('pending', 'signed', 'confirmed', 'failed', 'rejected')),
  error         text,
  tx_hash       text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX withdrawals_by_agent ON settlement.withdrawals (owner, agent, id DESC);
CREATE INDEX withdrawals_pending ON settlement.withdrawals (network, created_at) WHERE state = 'pending';

ALTER TABLE settlement.net_transfers DROP CONSTRAINT net_transfers_kind_check;
ALTER TABLE settlement.net_transfers ADD CONSTRAINT net_transfers_kind_check
  CHECK (kind IN ('payee', 'fee', 'withdrawal'));

-- The signer: a withdrawal is a net transfer of kind 'withdrawal' covering only itself.
ALTER TABLE signer.net_transfers DROP CONSTRAINT net_transfers_kind_check;
ALTER TABLE signer.net_transfers ADD CONSTRAINT net_transfers_kind_check
  CHECK (kind IN ('payee', 'fee', 'withdrawal'));

-- The policy service: an account's withdrawal allow-list (no rows: any address).
CREATE TABLE policy.withdrawal_addresses (
  owner       uuid NOT NULL,
  address     text NOT NULL CHECK (address ~ '^0x[0-9a-f]{40}$'),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (owner, address)
);
