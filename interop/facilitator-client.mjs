// The official HTTPFacilitatorClient calling awx's facilitator with good and bad payloads.
// Payloads are signed with viem here, independently of awx.
// Env: FACILITATOR_URL, API_KEY, TOKEN, TOKEN_NAME, TOKEN_VERSION, PAY_TO, PAYER_KEY, POOR_KEY
// (a key with no tokens), AMOUNT (atomic), CHAIN_ID.
import { toolsRequire, env, NETWORK, print } from "./common.mjs";

const { privateKeyToAccount, generatePrivateKey } = toolsRequire("viem/accounts");
const { HTTPFacilitatorClient } = toolsRequire("@x402/core/server");

const apiKey = env("API_KEY");
const facilitator = new HTTPFacilitatorClient({
  url: env("FACILITATOR_URL"),
  createAuthHeaders: async () => ({
    verify: { "X-API-Key": apiKey },
    settle: { "X-API-Key": apiKey },
    supported: { "X-API-Key": apiKey },
  }),
});

const chainId = Number(env("CHAIN_ID"));
const token = env("TOKEN");
const payTo = env("PAY_TO");
const amount = env("AMOUNT");
const requirements = {
  scheme: "exact",
  network: NETWORK,
  amount,
  asset: token,
  payTo,
  maxTimeoutSeconds: 120,
  extra: { name: env("TOKEN_NAME"), version: env("TOKEN_VERSION") },
};
const types = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
};

function randomNonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return "0x" + Buffer.from(bytes).toString("hex");
}

// Signs a payload; `edit` may change the message (before signing) and the result.
async function payload({ key = env("PAYER_KEY"), edit = () => {}, after = (p) => p, req = requirements } = {}) {
  const account = privateKeyToAccount(key);
  const now = Math.floor(Date.now() / 1000);
  const message = { from: account.address, to: payTo, value: amount, validAfter: "0", validBefore: String(now + 120), nonce: randomNonce() };
  edit(message, now);
  const signature = await account.signTypedData({
    domain: { name: req.extra.name, version: req.extra.version, chainId, verifyingContract: token },
    types,
    primaryType: "TransferWithAuthorization",
    message: { ...message, value: BigInt(message.value), validAfter: BigInt(message.validAfter), validBefore: BigInt(message.validBefore) },
  });
  return after({ x402Version: 2, resource: { url: "http://127.0.0.1/paid", description: "", mimeType: "" }, accepted: req, payload: { signature, authorization: message } });
}

const results = {};
async function verifyCase(name, paymentPayload, req = requirements) {
  try {
    const answer = await facilitator.verify(paymentPayload, req);
    results[name] = { isValid: answer.isValid, invalidReason: answer.invalidReason ?? null, payer: answer.payer ?? null };
  } catch (error) {
    results[name] = { error: String(error) };
  }
}

try {
  results.supported = await facilitator.getSupported();
  const good = await payload();
  await verifyCase("valid", good);
  const settled = await facilitator.settle(good, requirements);
  results.settle = settled;
  const again = await facilitator.settle(good, requirements);
  results.settleAgain = again;
  await verifyCase("used_nonce", good);
  await verifyCase("expired", await payload({ edit: (m, now) => { m.validBefore = String(now - 10); } }));
  await verifyCase("not_yet_valid", await payload({ edit: (m, now) => { m.validAfter = String(now + 3600); } }));
  await verifyCase("wrong_recipient", await payload({ edit: (m) => { m.to = privateKeyToAccount(generatePrivateKey()).address; } }));
  await verifyCase("wrong_amount", await payload({ edit: (m) => { m.value = String(BigInt(amount) - 1n); } }));
  await verifyCase("bad_signature", await payload({ after: (p) => { p.payload.authorization.from = privateKeyToAccount(generatePrivateKey()).address; return p; } }));
  await verifyCase("insufficient_balance", await payload({ key: env("POOR_KEY") }));
  const otherNetwork = { ...requirements, network: "eip155:999999" };
  await verifyCase("unknown_network", await payload({ req: otherNetwork }), otherNetwork);
  print(results);
} catch (error) {
  print({ error: String(error && error.stack ? error.stack : error), results });
  process.exit(1);
}
