-- The chain watcher: deposits into agents' wallets seen on chain, reorganisations, and
-- authorizations of our wallets used by someone else.
--
-- Per chain, a cursor (the next block to scan) and the hashes of the blocks scanned last, to
-- notice a reorganisation: a stored hash the chain no longer has. Deposits are keyed by
-- (network, tx hash, log index, block hash): a transfer whose block left the chain is reversed,
-- and credited again as a new deposit if it reappears in another block.
--
-- deposit: pending (seen, stored before the ledger is asked) -> credited -> reversed, or refused
-- (the ledger will never take it: a faucet deposit on a chain the ledger does not call a
-- development chain)

CREATE TABLE settlement.watch_cursors (
  network     text PRIMARY KEY,
  -- The next block to scan.
  next_block  bigint NOT NULL CHECK (next_block >= 0),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The hash of the last block of each scanned range (and of every block a deposit is in), kept
-- for the last `watch.blocks_remembered` blocks.
CREATE TABLE settlement.watched_blocks (
  network   text NOT NULL,
  number    bigint NOT NULL CHECK (number >= 0),
  hash      text NOT NULL CHECK (hash ~ '^0x[0-9a-f]{64}$'),
  PRIMARY KEY (network, number)
);

CREATE TABLE settlement.deposits (
  id               uuid PRIMARY KEY,
  network          text NOT NULL,
  token            text NOT NULL CHECK (token ~ '^0x[0-9a-f]{40}$'),
  decimals         smallint NOT NULL CHECK (decimals BETWEEN 0 AND 36),
  tx_hash          text NOT NULL CHECK (tx_hash ~ '^0x[0-9a-f]{64}$'),
  log_index        bigint NOT NULL CHECK (log_index >= 0),
  block_number     bigint NOT NULL CHECK (block_number >= 0),
  block_hash       text NOT NULL CHECK (block_hash ~ '^0x[0-9a-f]{64}$'),
  sender           text NOT NULL CHECK (sender ~ '^0x[0-9a-f]{40}$'),
  wallet           text NOT NULL CHECK (wallet ~ '^0x[0-9a-f]{40}$'),
  owner            uuid NOT NULL,
  agent            uuid NOT NULL,
  amount           numeric(78,0) NOT NULL CHECK (amount > 0),
  source           text NOT NULL CHECK (source IN ('chain', 'faucet')),
  state            text NOT NULL CHECK (state IN ('pending', 'credited', 'reversed', 'refused')),
  -- Why the ledger refused it.
  error            text,
  ledger_id        uuid,
  reversal_reason  text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  credited_at      timestamptz,
  reversed_at      timestamptz,
  UNIQUE (network, tx_hash, log_index, block_hash),
  CHECK (state <> 'credited' OR ledger_id IS NOT NULL),
  CHECK ((state = 'reversed') = (reversed_at IS NOT NULL))
);
CREATE INDEX deposits_by_agent ON settlement.deposits (owner, agent, created_at DESC, id DESC);
CREATE INDEX deposits_by_block ON settlement.deposits (network, block_number) WHERE state <> 'reversed';
CREATE INDEX deposits_pending ON settlement.deposits (network) WHERE state = 'pending';

-- What the watcher saw that awx did not do: an authorization of one of our wallets with a nonce
-- awx never issued, or tokens leaving an agent's wallet in a transaction awx did not sign. Each
-- means a wallet key was misused; an operator must look (metric
-- settlement_watcher_alerts_total, and an error log).
CREATE TABLE settlement.chain_alerts (
  id          uuid PRIMARY KEY,
  network     text NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('unknown_nonce', 'unsigned_outflow', 'unexpected_use')),
  tx_hash     text NOT NULL,
  log_index   bigint NOT NULL,
  wallet      text NOT NULL,
  detail      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (network, tx_hash, log_index, kind)
);

-- The ledger: what a reorganisation took back that the agent had already spent.
ALTER TABLE ledger.accounts DROP CONSTRAINT accounts_code_check;
ALTER TABLE ledger.accounts ADD CONSTRAINT accounts_code_check
  CHECK (code IN ('wallet', 'payable', 'fee_revenue', 'fee_collected', 'onchain_mirror', 'settlement_clearing', 'reorg_loss', 'test'));
