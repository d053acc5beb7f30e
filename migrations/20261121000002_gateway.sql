-- The gateway's schema: tenants, their API keys, and idempotency records.
SELECT public.awx_bus_install('gateway');

CREATE TABLE gateway.accounts (
  id           uuid PRIMARY KEY,
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  -- Per-account overrides of per-key rate limits by action: {"<action>": {"per_second": n, "burst": n}}.
  rate_limits  jsonb NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gateway.api_keys (
  id           uuid PRIMARY KEY,
  account_id   uuid NOT NULL REFERENCES gateway.accounts (id),
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  scopes       text[] NOT NULL
               CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['agent', 'provider', 'admin']),
  -- argon2id, PHC string format. The secret itself is never stored.
  secret_hash  text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  -- Set when the key is rotated with a grace period: the key stops working at this time.
  expires_at   timestamptz,
  revoked_at   timestamptz,
  rotated_to   uuid REFERENCES gateway.api_keys (id)
);
CREATE INDEX api_keys_by_account ON gateway.api_keys (account_id, id);

CREATE TABLE gateway.idempotency_keys (
  account_id        uuid NOT NULL REFERENCES gateway.accounts (id),
  idempotency_key   text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  -- SHA-256 of method, path and body: the same key with another request is refused.
  request_hash      bytea NOT NULL,
  state             text NOT NULL CHECK (state IN ('in_progress', 'completed')),
  -- While in progress, the request holds the key until this time; a crashed holder's lease ends.
  locked_until      timestamptz NOT NULL,
  response_status   smallint,
  response_headers  jsonb,
  response_body     bytea,
  created_at        timestamptz NOT NULL DEFAULT now(),
  expires_at        timestamptz NOT NULL,
  PRIMARY KEY (account_id, idempotency_key)
);
CREATE INDEX idempotency_keys_by_expiry ON gateway.idempotency_keys (expires_at);
