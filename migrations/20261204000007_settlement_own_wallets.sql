-- Our agents' wallet addresses, as the facilitator knows them. The policy service registers a new
-- agent's wallet here (the settlement service's `RegisterWallet` command) before the agent exists,
-- so a payment of an agent can never reach the facilitator before its wallet is known: verify and
-- settle send the policy service only payments from these addresses, and everyone else's go to
-- the chain without asking it. Rows are never deleted (a deleted agent's wallet stays ours).
CREATE TABLE settlement.own_wallets (
    address text PRIMARY KEY CHECK (address ~ '^0x[0-9a-f]{40}$'),
    agent_id uuid NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- The agents that exist already (deleted ones included).
INSERT INTO settlement.own_wallets (address, agent_id)
SELECT address, id FROM policy.agents
ON CONFLICT DO NOTHING;
