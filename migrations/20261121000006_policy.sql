-- The policy service's schema: agents and their wallet addresses, policies, sessions, payments
-- from request to capture, and approvals. Only the policy service writes here.
SELECT public.awx_bus_install('policy');

-- An agent of an account. Its wallet's key is held by the signer; only the address is here.
CREATE TABLE policy.agents (
  id             uuid PRIMARY KEY,
  owner          uuid NOT NULL,
  name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  address        text NOT NULL UNIQUE CHECK (address ~ '^0x[0-9a-f]{40}$'),
  default_chain  text NOT NULL,
  deleted_at     timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agents_by_owner ON policy.agents (owner, created_at DESC);

-- An agent's spending policy (one row per agent). Limits are US dollars; NULL or an empty
-- array does not restrict.
CREATE TABLE policy.policies (
  agent_id            uuid PRIMARY KEY REFERENCES policy.agents (id),
  per_payment_max     numeric(30, 6) CHECK (per_payment_max >= 0),
  daily_limit         numeric(30, 6) CHECK (daily_limit >= 0),
  allowed_chains      text[] NOT NULL DEFAULT '{}',
  allowed_urls        text[] NOT NULL DEFAULT '{}',
  payee_allowlist     text[] NOT NULL DEFAULT '{}',
  approval_threshold  numeric(30, 6) CHECK (approval_threshold >= 0),
  updated_at          timestamptz NOT NULL DEFAULT now()
);

-- A session: a budget (dollars) on one chain until expires_at. spent counts signed payments,
-- reserved counts payments in flight or waiting for approval; both change only under the row's
-- lock, so spent + reserved never exceeds the budget.
CREATE TABLE policy.sessions (
  id            uuid PRIMARY KEY,
  owner         uuid NOT NULL,
  agent_id      uuid NOT NULL REFERENCES policy.agents (id),
  budget_limit  numeric(30, 6) NOT NULL CHECK (budget_limit > 0),
  spent         numeric(30, 6) NOT NULL DEFAULT 0 CHECK (spent >= 0),
  reserved      numeric(30, 6) NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  chain         text NOT NULL,
  allowed_urls  text[] NOT NULL DEFAULT '{}',
  expires_at    timestamptz NOT NULL,
  revoked_at    timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT sessions_within_budget CHECK (spent + reserved <= budget_limit)
);
CREATE INDEX sessions_by_agent ON policy.sessions (agent_id, created_at DESC);

-- A payment, from request to capture. Its id is also its hold's id in the ledger (ldg_ in the
-- API). amount is atomic units of the token; amount_usd is dollars (what limits count).
CREATE TABLE policy.payments (
  id                 uuid PRIMARY KEY,
  owner              uuid NOT NULL,
  agent_id           uuid NOT NULL REFERENCES policy.agents (id),
  session_id         uuid REFERENCES policy.sessions (id),
  state              text NOT NULL CHECK (state IN (
                       'pending_approval', 'authorizing', 'authorized', 'captured', 'settled',
                       'failed', 'rejected', 'expired')),
  -- Whether amount_usd is still counted in the session's reserved (true) or spent (false),
  -- and in the agent's rolling 24 h usage.
  counts             boolean NOT NULL DEFAULT true,
  target_url         text NOT NULL,
  x402_version       integer NOT NULL CHECK (x402_version IN (1, 2)),
  network            text NOT NULL,
  chain_id           bigint NOT NULL CHECK (chain_id > 0),
  token              text NOT NULL CHECK (token ~ '^0x[0-9a-f]{40}$'),
  token_symbol       text NOT NULL,
  token_decimals     smallint NOT NULL CHECK (token_decimals BETWEEN 0 AND 36),
  token_name         text NOT NULL,
  token_version      text NOT NULL,
  payer              text NOT NULL CHECK (payer ~ '^0x[0-9a-f]{40}$'),
  pay_to             text NOT NULL CHECK (pay_to ~ '^0x[0-9a-f]{40}$'),
  amount             numeric(78, 0) NOT NULL CHECK (amount > 0),
  amount_usd         numeric(30, 6) NOT NULL CHECK (amount_usd > 0),
  fee                numeric(78, 0),
  fee_rate           numeric(8, 4),
  -- The offer paid, verbatim (it becomes the payload's `accepted`), and the resource.
  offer              jsonb NOT NULL,
  resource           jsonb,
  max_timeout_seconds bigint NOT NULL CHECK (max_timeout_seconds > 0),
  -- The authorization, fixed before it is signed, so a retry signs the same one.
  nonce              bytea CHECK (length(nonce) = 32),
  valid_after        bigint,
  valid_before       bigint,
  signature          bytea,
  payment_signature  text,
  -- What the sweeper does next, and when: release a payment still authorizing, expire one
  -- waiting for approval, or expire an authorization never captured (after validBefore).
  deadline           timestamptz NOT NULL,
  -- The payment failed after its hold was asked for and the hold could not be released yet:
  -- the sweeper retries the release.
  void_needed        boolean NOT NULL DEFAULT false,
  error_code         text,
  error_message      text,
  decided_by         text,
  decision_reason    text,
  decided_at         timestamptz,
  provider           uuid,
  captured_at        timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_by_agent_time ON policy.payments (agent_id, created_at) WHERE counts;
CREATE UNIQUE INDEX payments_by_payer_nonce ON policy.payments (payer, nonce) WHERE nonce IS NOT NULL;
CREATE INDEX payments_to_sweep ON policy.payments (deadline)
  WHERE state IN ('pending_approval', 'authorizing', 'authorized');
CREATE INDEX payments_to_void ON policy.payments (updated_at) WHERE void_needed;
