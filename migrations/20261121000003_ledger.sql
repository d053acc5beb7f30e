-- The ledger's schema: accounts with TigerBeetle's four counters, transfers (single- and
-- two-phase, several legs each), immutable entries, captured volume, and the versioned fee
-- schedule. Only the ledger service writes here.
SELECT public.awx_bus_install('ledger');

CREATE TABLE ledger.accounts (
  id               uuid PRIMARY KEY,
  -- wallet: an agent's funds (available = credits_posted - debits_posted - debits_pending;
  --         held = debits_pending); payable: owed to a payee address; fee_revenue: platform fees,
  --         sharded; onchain_mirror: the asset held on chain for wallets; settlement_clearing:
  --         payouts in flight on chain.
  code             text NOT NULL CHECK (code IN ('wallet', 'payable', 'fee_revenue', 'onchain_mirror', 'settlement_clearing', 'test')),
  network          text NOT NULL,
  token            text NOT NULL CHECK (token ~ '^0x[0-9a-f]{40}$'),
  decimals         smallint NOT NULL CHECK (decimals BETWEEN 0 AND 38),
  -- The tenant owning a wallet (gateway account id); null for platform accounts.
  owner            uuid,
  -- The agent id of a wallet, the payee address of a payable, the shard of fee revenue.
  ref              text NOT NULL,
  constraint_kind  text NOT NULL CHECK (constraint_kind IN ('none', 'debits_must_not_exceed_credits', 'credits_must_not_exceed_debits')),
  debits_pending   numeric(39,0) NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
  debits_posted    numeric(39,0) NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
  credits_pending  numeric(39,0) NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
  credits_posted   numeric(39,0) NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
  version          bigint NOT NULL DEFAULT 0,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (code, network, token, ref),
  -- The database holds the constraints too, whatever the code does.
  CHECK (constraint_kind <> 'debits_must_not_exceed_credits' OR debits_posted + debits_pending <= credits_posted),
  CHECK (constraint_kind <> 'credits_must_not_exceed_debits' OR credits_posted + credits_pending <= debits_posted)
);
CREATE INDEX accounts_by_owner ON ledger.accounts (owner, ref) WHERE owner IS NOT NULL;

CREATE TABLE ledger.transfers (
  id               uuid PRIMARY KEY,
  idempotency_key  text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 300),
  -- SHA-256 of the request: the same key with another request is refused.
  request_hash     bytea NOT NULL,
  kind             text NOT NULL CHECK (kind IN ('post', 'hold', 'post_pending', 'void_pending')),
  -- The hold a post_pending or void_pending resolves; at most one per hold.
  pending_id       uuid REFERENCES ledger.transfers (id),
  -- A hold is pending, then captured, voided or expired; every other transfer is posted.
  status           text NOT NULL CHECK (status IN ('posted', 'pending', 'captured', 'voided', 'expired')),
  timeout_at       timestamptz,
  network          text NOT NULL,
  token            text NOT NULL,
  owner            uuid,
  metadata         jsonb NOT NULL DEFAULT '{}',
  -- What the operation answered, returned again on replay.
  result           jsonb NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  CHECK ((kind IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL)),
  CHECK ((kind = 'hold') = (timeout_at IS NOT NULL))
);
CREATE UNIQUE INDEX transfers_one_resolution_per_hold ON ledger.transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_pending_by_timeout ON ledger.transfers (timeout_at) WHERE status = 'pending';

CREATE TABLE ledger.transfer_legs (
  transfer_id      uuid NOT NULL REFERENCES ledger.transfers (id),
  leg              smallint NOT NULL,
  debit_account    uuid NOT NULL REFERENCES ledger.accounts (id),
  credit_account   uuid NOT NULL REFERENCES ledger.accounts (id),
  amount           numeric(39,0) NOT NULL CHECK (amount >= 0),
  PRIMARY KEY (transfer_id, leg),
  CHECK (debit_account <> credit_account)
);

CREATE TABLE ledger.entries (
  id                     bigserial PRIMARY KEY,
  transfer_id            uuid NOT NULL REFERENCES ledger.transfers (id),
  leg                    smallint NOT NULL,
  account_id             uuid NOT NULL REFERENCES ledger.accounts (id),
  side                   text NOT NULL CHECK (side IN ('debit', 'credit')),
  pending_added          numeric(39,0) NOT NULL CHECK (pending_added >= 0),
  pending_removed        numeric(39,0) NOT NULL CHECK (pending_removed >= 0),
  posted_added           numeric(39,0) NOT NULL CHECK (posted_added >= 0),
  debits_pending_after   numeric(39,0) NOT NULL,
  debits_posted_after    numeric(39,0) NOT NULL,
  credits_pending_after  numeric(39,0) NOT NULL,
  credits_posted_after   numeric(39,0) NOT NULL,
  account_version        bigint NOT NULL,
  created_at             timestamptz NOT NULL DEFAULT now(),
  UNIQUE (account_id, account_version)
);
CREATE INDEX entries_by_transfer ON ledger.entries (transfer_id);

-- Captured payments, for each tenant's 30-day settled volume (which picks its fee tier).
CREATE TABLE ledger.captures (
  transfer_id   uuid PRIMARY KEY REFERENCES ledger.transfers (id),
  owner         uuid NOT NULL,
  network       text NOT NULL,
  token         text NOT NULL,
  amount        numeric(39,0) NOT NULL,
  fee           numeric(39,0) NOT NULL,
  volume_usd    numeric(40,6) NOT NULL,
  captured_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX captures_by_owner ON ledger.captures (owner, captured_at);

-- The fee schedule, versioned: a new version takes effect at its effective_from; versions are
-- never changed.
CREATE TABLE ledger.fee_schedules (
  version         integer PRIMARY KEY,
  effective_from  timestamptz NOT NULL UNIQUE,
  tiers           jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger.fee_schedules (version, effective_from, tiers) VALUES (1, '2026-01-01T00:00:00Z', '[
  {"name": "starter",    "volume_from_usd": "0",      "rate_percent": "2.0"},
  {"name": "growth",     "volume_from_usd": "1000",   "rate_percent": "1.5"},
  {"name": "scale",      "volume_from_usd": "10000",  "rate_percent": "1.0"},
  {"name": "enterprise", "volume_from_usd": "100000", "rate_percent": "0.5"}
]');

-- Immutability: the database itself refuses to change history.
CREATE FUNCTION ledger.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger.% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON ledger.entries
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON ledger.entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER legs_append_only BEFORE UPDATE OR DELETE ON ledger.transfer_legs
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER legs_no_truncate BEFORE TRUNCATE ON ledger.transfer_legs
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER captures_append_only BEFORE UPDATE OR DELETE ON ledger.captures
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER fee_schedules_append_only BEFORE UPDATE OR DELETE ON ledger.fee_schedules
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();

-- A transfer is never deleted, and only a pending hold's status may change (once).
CREATE FUNCTION ledger.guard_transfer_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'ledger.transfers rows are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.status <> 'pending' OR NEW.status NOT IN ('captured', 'voided', 'expired')
     OR (to_jsonb(NEW) - 'status') <> (to_jsonb(OLD) - 'status') THEN
    RAISE EXCEPTION 'ledger.transfers: only a pending hold''s status may change, once'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER transfers_guarded BEFORE UPDATE OR DELETE ON ledger.transfers
  FOR EACH ROW EXECUTE FUNCTION ledger.guard_transfer_update();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON ledger.transfers
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
