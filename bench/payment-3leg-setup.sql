-- The schema of the durable 3-leg payment reference (bench/payment-3leg.sql): accounts with
-- balances (payers, payees, 16 fee shards), entries, an idempotency table and an outbox.
SET client_min_messages = warning;
DROP TABLE IF EXISTS ref_accounts, ref_entries, ref_idempotency, ref_outbox;
CREATE TABLE ref_accounts (id bigint PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
CREATE TABLE ref_entries (id bigserial PRIMARY KEY, payment uuid NOT NULL, account bigint NOT NULL,
                          amount bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE ref_idempotency (key uuid PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE ref_outbox (seq bigserial PRIMARY KEY, payload jsonb NOT NULL);
-- 1..1000 payers (rich), 100001..100100 payees, 200001..200016 fee shards.
INSERT INTO ref_accounts SELECT g, 1000000000000 FROM generate_series(1, 1000) g;
INSERT INTO ref_accounts SELECT g, 0 FROM generate_series(100001, 100100) g;
INSERT INTO ref_accounts SELECT g, 0 FROM generate_series(200001, 200016) g;
