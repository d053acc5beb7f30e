-- One durable 3-leg payment in one transaction, the physical reference of `make bench-pay`
-- (issue 13): the idempotency key inserted, the payer, the payee and a fee shard locked in id
-- order, three balance updates, three entries, one outbox row. The limit for one payment per
-- transaction on this Postgres.
\set payer random(1, 1000)
\set payee random(100001, 100100)
\set shard random(200001, 200016)
BEGIN;
INSERT INTO ref_idempotency (key) VALUES (gen_random_uuid());
SELECT id FROM ref_accounts WHERE id IN (:payer, :payee, :shard) ORDER BY id FOR UPDATE;
UPDATE ref_accounts SET balance = balance - 10200 WHERE id = :payer;
UPDATE ref_accounts SET balance = balance + 10000 WHERE id = :payee;
UPDATE ref_accounts SET balance = balance + 200 WHERE id = :shard;
INSERT INTO ref_entries (payment, account, amount) VALUES
  ('00000000-0000-0000-0000-000000000000', :payer, -10200),
  ('00000000-0000-0000-0000-000000000000', :payee, 10000),
  ('00000000-0000-0000-0000-000000000000', :shard, 200);
INSERT INTO ref_outbox (payload) VALUES ('{"topic": "payment.captured"}');
COMMIT;
