// An official @x402/express paid endpoint using awx as its facilitator.
// Env: FACILITATOR_URL, API_KEY, TOKEN, PAY_TO, AMOUNT (atomic), TOKEN_NAME, TOKEN_VERSION.
import { toolsRequire, env, NETWORK, print } from "./common.mjs";

const express = toolsRequire("express");
const { paymentMiddleware, x402ResourceServer } = toolsRequire("@x402/express");
const { HTTPFacilitatorClient } = toolsRequire("@x402/core/server");
const { ExactEvmScheme } = toolsRequire("@x402/evm/exact/server");

const apiKey = env("API_KEY");
const facilitator = new HTTPFacilitatorClient({
  url: env("FACILITATOR_URL"),
  createAuthHeaders: async () => ({
    verify: { "X-API-Key": apiKey },
    settle: { "X-API-Key": apiKey },
    supported: { "X-API-Key": apiKey },
  }),
});
const resourceServer = new x402ResourceServer(facilitator).register(NETWORK, new ExactEvmScheme());
const app = express();
app.use(
  paymentMiddleware(
    {
      "GET /paid": {
        accepts: {
          scheme: "exact",
          network: NETWORK,
          payTo: env("PAY_TO"),
          price: { amount: env("AMOUNT"), asset: env("TOKEN"), extra: { name: env("TOKEN_NAME"), version: env("TOKEN_VERSION") } },
          maxTimeoutSeconds: 120,
        },
        description: "a paid endpoint served by the official express middleware",
        mimeType: "application/json",
      },
    },
    resourceServer,
  ),
);
app.get("/paid", (req, res) => res.json({ ok: true, served_by: "@x402/express" }));
const server = app.listen(0, "127.0.0.1", () => print({ port: server.address().port }));
