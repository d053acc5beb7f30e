-- The id the request's handler mints for what it creates (a payment, a session, an agent, a
-- withdrawal), kept across retries: a 5xx answer releases the key's lease instead of deleting the
-- record, and the retry that takes it over mints the same id, so a retry after a timeout (the
-- first attempt may have gone through downstream) cannot create a second one
-- (see services/gateway/src/idempotency.rs). NULL on records made before it existed.
ALTER TABLE gateway.idempotency_keys ADD COLUMN minted_id uuid;
