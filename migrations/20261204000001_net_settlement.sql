-- Net settlement of our own agents' captured payments (the batch settlement worker).
--
-- An item (one captured payment, settlement.items) is netted into a net transfer: one new
-- EIP-3009 transfer from the agent's wallet for the sum of a group (network, token, payer,
-- payee), kind 'payee'; the platform's fees of the same payer go in a transfer of kind 'fee' to
-- the platform's fee address. Every net transfer of a chain that is signed and due goes out in
-- one batch transaction (Multicall3 `aggregate3` with per-call failure isolation).
--
-- State machines (every state stored before the step that follows it):
--   net transfer: planned -> signed -> confirmed, or back to signed after a failed attempt
--                 (retried in the next batch as the same signed authorization), flagged after
--                 `batch.attempts_max` failures.
--   batch:        planned -> signed -> broadcast -> confirmed | failed
--   chain tx:     signed -> broadcast -> confirmed | failed | replaced (a higher-fee
--                 transaction with the same relayer nonce took its place)

-- What an item owes the platform (captured with it); its netting.
ALTER TABLE settlement.items
  ADD COLUMN fee            numeric(78,0) NOT NULL DEFAULT 0 CHECK (fee >= 0),
  ADD COLUMN settled_tx     text,
  ADD COLUMN settled_at     timestamptz,
  ADD COLUMN last_error     text,
  -- When the chain showed the authorization unused after its validBefore (final: from then on
  -- only a net transfer can pay the item).
  ADD COLUMN eligible_at    timestamptz,
  -- Whether the ledger has recorded the payout of an item settled externally.
  ADD COLUMN payout_recorded boolean NOT NULL DEFAULT false;
ALTER TABLE settlement.items DROP CONSTRAINT items_state_check;
ALTER TABLE settlement.items ADD CONSTRAINT items_state_check
  CHECK (state IN ('queued', 'batched', 'settled', 'settled_externally'));
-- An item paid on chain by someone else without ever being settled through us has no provider.
ALTER TABLE settlement.items ALTER COLUMN provider DROP NOT NULL;
CREATE INDEX items_expiring ON settlement.items (network, valid_before) WHERE state = 'queued';
CREATE INDEX items_unrecorded ON settlement.items (network) WHERE state = 'settled_externally' AND NOT payout_recorded;

CREATE TABLE settlement.batches (
  id           uuid PRIMARY KEY,
  network      text NOT NULL,
  chain_id     bigint NOT NULL CHECK (chain_id > 0),
  -- The contract called (Multicall3's address).
  contract     text NOT NULL CHECK (contract ~ '^0x[0-9a-f]{40}$'),
  state        text NOT NULL CHECK (state IN ('planned', 'signed', 'broadcast', 'confirmed', 'failed')),
  -- The mined transaction (one of the batch's chain_txs).
  tx_hash      text,
  gas_used     bigint,
  error        text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);
-- One batch in flight per chain, whatever the number of workers.
CREATE UNIQUE INDEX batches_one_in_flight ON settlement.batches (network)
  WHERE state IN ('planned', 'signed', 'broadcast');

CREATE TABLE settlement.net_transfers (
  id            uuid PRIMARY KEY,
  network       text NOT NULL,
  chain_id      bigint NOT NULL CHECK (chain_id > 0),
  token         text NOT NULL CHECK (token ~ '^0x[0-9a-f]{40}$'),
  kind          text NOT NULL CHECK (kind IN ('payee', 'fee')),
  payer         text NOT NULL CHECK (payer ~ '^0x[0-9a-f]{40}$'),
  payee         text NOT NULL CHECK (payee ~ '^0x[0-9a-f]{40}$'),
  amount        numeric(78,0) NOT NULL CHECK (amount > 0),
  -- The EIP-3009 authorization, fixed when planned, so a retried signing signs the same one.
  nonce         text NOT NULL UNIQUE CHECK (nonce ~ '^0x[0-9a-f]{64}$'),
  valid_after   bigint NOT NULL,
  valid_before  bigint NOT NULL,
  signature     bytea,
  state         text NOT NULL CHECK (state IN ('planned', 'signed', 'confirmed', 'flagged')),
  -- The batch it is in now (or was confirmed in).
  batch_id      uuid REFERENCES settlement.batches (id),
  attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  last_error    text,
  tx_hash       text,
  -- Whether the ledger has recorded the confirmed transfer (payout or fee collection).
  recorded      boolean NOT NULL DEFAULT false,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CHECK ((state = 'planned') = (signature IS NULL)),
  CHECK (state <> 'confirmed' OR tx_hash IS NOT NULL)
);
CREATE INDEX net_transfers_open ON settlement.net_transfers (network, state) WHERE state IN ('planned', 'signed');
CREATE INDEX net_transfers_unrecorded ON settlement.net_transfers (network) WHERE state = 'confirmed' AND NOT recorded;
CREATE INDEX net_transfers_by_batch ON settlement.net_transfers (batch_id);

-- Which payments a net transfer carries: a payment's amount is in at most one payee transfer
-- and its fee in at most one fee transfer, ever (the primary key, not a check in code).
CREATE TABLE settlement.net_transfer_items (
  payment_id       uuid NOT NULL REFERENCES settlement.items (payment_id),
  kind             text NOT NULL CHECK (kind IN ('payee', 'fee')),
  net_transfer_id  uuid NOT NULL REFERENCES settlement.net_transfers (id),
  PRIMARY KEY (payment_id, kind)
);
CREATE INDEX net_transfer_items_by_transfer ON settlement.net_transfer_items (net_transfer_id);

-- Chain transactions may now carry a batch, and be replaced by a higher-fee transaction with the
-- same relayer nonce (so the nonce is unique among transactions not replaced).
ALTER TABLE settlement.chain_txs ADD COLUMN batch_id uuid REFERENCES settlement.batches (id);
ALTER TABLE settlement.chain_txs DROP CONSTRAINT chain_txs_purpose_check;
ALTER TABLE settlement.chain_txs ADD CONSTRAINT chain_txs_purpose_check
  CHECK (purpose IN ('settlement', 'faucet', 'batch'));
ALTER TABLE settlement.chain_txs ADD CONSTRAINT chain_txs_batch_iff_purpose
  CHECK ((purpose = 'batch') = (batch_id IS NOT NULL));
ALTER TABLE settlement.chain_txs DROP CONSTRAINT chain_txs_state_check;
ALTER TABLE settlement.chain_txs ADD CONSTRAINT chain_txs_state_check
  CHECK (state IN ('signed', 'broadcast', 'confirmed', 'failed', 'replaced'));
ALTER TABLE settlement.chain_txs ADD COLUMN max_fee_per_gas numeric(39,0);
ALTER TABLE settlement.chain_txs ADD COLUMN max_priority_fee_per_gas numeric(39,0);
ALTER TABLE settlement.chain_txs ADD COLUMN gas_limit bigint;
ALTER TABLE settlement.chain_txs DROP CONSTRAINT chain_txs_chain_id_relayer_nonce_key;
CREATE UNIQUE INDEX chain_txs_relayer_nonce ON settlement.chain_txs (chain_id, relayer, nonce)
  WHERE state <> 'replaced';
CREATE INDEX chain_txs_by_batch ON settlement.chain_txs (batch_id) WHERE batch_id IS NOT NULL;

-- The signer: every net transfer it signed, and the payments each covers. A payment is part of
-- at most one signed net transfer per kind (the primary key).
ALTER TABLE signer.signing_log DROP CONSTRAINT signing_log_kind_check;
ALTER TABLE signer.signing_log ADD CONSTRAINT signing_log_kind_check
  CHECK (kind IN ('transaction', 'authorization', 'net_transfer'));
-- Every net transfer the signer signed, with its nonce: a wallet signs a nonce (per chain and
-- token) at most once, across payments (signer.authorizations) and net transfers (here).
CREATE TABLE signer.net_transfers (
  transfer_id  uuid PRIMARY KEY REFERENCES signer.signing_log (request_id),
  kind         text NOT NULL CHECK (kind IN ('payee', 'fee')),
  address      text NOT NULL REFERENCES signer.keys (address),
  chain_id     bigint NOT NULL CHECK (chain_id > 0),
  token        text NOT NULL CHECK (token ~ '^0x[0-9a-f]{40}$'),
  nonce        bytea NOT NULL CHECK (length(nonce) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (address, chain_id, token, nonce)
);
CREATE TRIGGER net_transfers_append_only BEFORE UPDATE OR DELETE ON signer.net_transfers
  FOR EACH ROW EXECUTE FUNCTION signer.refuse_change();
CREATE TRIGGER net_transfers_no_truncate BEFORE TRUNCATE ON signer.net_transfers
  FOR EACH STATEMENT EXECUTE FUNCTION signer.refuse_change();
CREATE TABLE signer.net_transfer_payments (
  payment_id    uuid NOT NULL REFERENCES signer.authorizations (payment_id),
  kind          text NOT NULL CHECK (kind IN ('payee', 'fee')),
  transfer_id   uuid NOT NULL REFERENCES signer.net_transfers (transfer_id),
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (payment_id, kind)
);
CREATE TRIGGER net_transfer_payments_append_only BEFORE UPDATE OR DELETE ON signer.net_transfer_payments
  FOR EACH ROW EXECUTE FUNCTION signer.refuse_change();
CREATE TRIGGER net_transfer_payments_no_truncate BEFORE TRUNCATE ON signer.net_transfer_payments
  FOR EACH STATEMENT EXECUTE FUNCTION signer.refuse_change();

-- The ledger: fees moved on chain from the agents' wallets to the platform's fee address.
ALTER TABLE ledger.accounts DROP CONSTRAINT accounts_code_check;
ALTER TABLE ledger.accounts ADD CONSTRAINT accounts_code_check
  CHECK (code IN ('wallet', 'payable', 'fee_revenue', 'fee_collected', 'onchain_mirror', 'settlement_clearing', 'test'));
