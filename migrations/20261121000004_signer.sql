-- The signer's schema: keys encrypted at rest, and the append-only log of every signature.
-- Only the signer service writes here; it listens on no port and is reached through bus
-- commands only.
SELECT public.awx_bus_install('signer');

-- Private keys, each encrypted with AES-256-GCM under the key-encryption key (KEK) named by
-- kek_id, with a random 96-bit nonce, and the address (lowercase 0x hex, as stored) as
-- associated data: a ciphertext copied onto another row does not decrypt.
CREATE TABLE signer.keys (
  id          uuid PRIMARY KEY,
  -- relayer: pays gas for settlement transactions; agent: an agent's wallet.
  purpose     text NOT NULL CHECK (purpose IN ('relayer', 'agent')),
  address     text NOT NULL UNIQUE CHECK (address ~ '^0x[0-9a-f]{40}$'),
  -- The 32-byte secret scalar encrypted, followed by the 16-byte GCM tag.
  ciphertext  bytea NOT NULL CHECK (length(ciphertext) = 48),
  nonce       bytea NOT NULL CHECK (length(nonce) = 12),
  -- The first 8 bytes of SHA-256 of the KEK, hex: which KEK decrypts this row.
  kek_id      text NOT NULL CHECK (kek_id ~ '^[0-9a-f]{16}$'),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX keys_by_purpose ON signer.keys (purpose, created_at, id);

-- Every signature the signer made, written in the transaction of the bus command that asked
-- for it. The request id is the caller's idempotency key: the same id with the same request
-- (request_hash) gets the stored result back; with another request it is refused.
CREATE TABLE signer.signing_log (
  request_id    uuid PRIMARY KEY,
  -- transaction: an EIP-1559 transaction from a relayer; authorization: an EIP-3009
  -- authorization from an agent's wallet.
  kind          text NOT NULL CHECK (kind IN ('transaction', 'authorization')),
  address       text NOT NULL REFERENCES signer.keys (address),
  chain_id      bigint NOT NULL CHECK (chain_id > 0),
  -- The contract called (a transaction) or the token (an authorization), lowercase 0x hex.
  target        text NOT NULL CHECK (target ~ '^0x[0-9a-f]{40}$'),
  request_hash  bytea NOT NULL CHECK (length(request_hash) = 32),
  -- What was returned, returned again on replay.
  result        jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signing_log_by_address ON signer.signing_log (address, created_at);

-- The log is append-only: the database itself refuses to change or remove it.
CREATE FUNCTION signer.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'signer.% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER signing_log_append_only BEFORE UPDATE OR DELETE ON signer.signing_log
  FOR EACH ROW EXECUTE FUNCTION signer.refuse_change();
CREATE TRIGGER signing_log_no_truncate BEFORE TRUNCATE ON signer.signing_log
  FOR EACH STATEMENT EXECUTE FUNCTION signer.refuse_change();

-- A key is never deleted (its funds would be lost with it). Only its encryption may change
-- (ciphertext, nonce and KEK together, when the KEK is rotated); its identity never does.
CREATE FUNCTION signer.guard_key_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'signer.keys rows are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.id <> OLD.id OR NEW.purpose <> OLD.purpose OR NEW.address <> OLD.address
     OR NEW.created_at <> OLD.created_at THEN
    RAISE EXCEPTION 'signer.keys: only a key''s encryption (ciphertext, nonce, kek_id) may change'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER keys_guarded BEFORE UPDATE OR DELETE ON signer.keys
  FOR EACH ROW EXECUTE FUNCTION signer.guard_key_update();
CREATE TRIGGER keys_no_truncate BEFORE TRUNCATE ON signer.keys
  FOR EACH STATEMENT EXECUTE FUNCTION signer.refuse_change();
