-- An idempotent response is replayed only to the API key that made the request (another key of
-- the same account gets idempotency_key_reused), and responses carrying secrets are stored
-- without them (see services/gateway/src/idempotency.rs).
ALTER TABLE gateway.idempotency_keys ADD COLUMN api_key_id uuid;
