-- Agent wallets and the EIP-3009 authorizations they signed. Only the signer service writes
-- here (see 20261121000004_signer.sql for the keys and the signing log).

-- Each agent's wallet: one key of purpose 'agent' in signer.keys, created by the CreateWallet
-- command in the same transaction as this row. An agent has one wallet, a key belongs to at most
-- one agent.
CREATE TABLE signer.agent_wallets (
  agent_id    uuid PRIMARY KEY,
  address     text NOT NULL UNIQUE REFERENCES signer.keys (address),
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every EIP-3009 authorization the signer signed, one per payment, written in the transaction
-- of its signing log row (request_id = payment_id). A wallet signs a nonce at most once per
-- (chain, token): the EIP-712 domain is what makes two signatures over one nonce different
-- authorizations.
CREATE TABLE signer.authorizations (
  payment_id  uuid PRIMARY KEY,
  address     text NOT NULL REFERENCES signer.keys (address),
  chain_id    bigint NOT NULL CHECK (chain_id > 0),
  -- The token (the domain's verifyingContract), lowercase 0x hex.
  token       text NOT NULL CHECK (token ~ '^0x[0-9a-f]{40}$'),
  nonce       bytea NOT NULL CHECK (length(nonce) = 32),
  request_id  uuid NOT NULL UNIQUE REFERENCES signer.signing_log (request_id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (address, chain_id, token, nonce)
);

-- Append-only, as the signing log: the database refuses to change or remove a wallet's link or
-- a signed authorization.
CREATE TRIGGER agent_wallets_append_only BEFORE UPDATE OR DELETE ON signer.agent_wallets
  FOR EACH ROW EXECUTE FUNCTION signer.refuse_change();
CREATE TRIGGER agent_wallets_no_truncate BEFORE TRUNCATE ON signer.agent_wallets
  FOR EACH STATEMENT EXECUTE FUNCTION signer.refuse_change();
CREATE TRIGGER authorizations_append_only BEFORE UPDATE OR DELETE ON signer.authorizations
  FOR EACH ROW EXECUTE FUNCTION signer.refuse_change();
CREATE TRIGGER authorizations_no_truncate BEFORE TRUNCATE ON signer.authorizations
  FOR EACH STATEMENT EXECUTE FUNCTION signer.refuse_change();
