// The SDK against the real platform on anvil. services/awx/tests/sdk_typescript.rs starts it,
// makes the agents and the paid APIs, sets the AWX_SDK_* variables, runs these tests
// (`node --test`), and then checks the balances and payments on its side.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { AgentWallex, AwxError, PaidButRefusedError, PaymentRefusedError, paymentInfo } from "../src/index.js";

const env = process.env;
const sdk = join(dirname(fileURLToPath(import.meta.url)), "..");
const aw = () => new AgentWallex({ apiKey: env.AWX_SDK_AGENT_KEY, baseUrl: env.AWX_SDK_BASE_URL });

test("the generated types match the OpenAPI document, and the declarations type-check", () => {
  execFileSync(process.execPath, [join(sdk, "tools", "gen-types.mjs"), "--check"], { stdio: "pipe" });
  execFileSync(join(sdk, "..", "..", "tools", "node_modules", ".bin", "tsc"), ["-p", sdk], { stdio: "pipe" });
});

test("the interceptor pays the paid route and returns the content and the payment", async () => {
  const client = aw();
  const fetchWithPayment = client.x402.httpInterceptor({
    agentId: env.AWX_SDK_AGENT,
    chain: env.AWX_SDK_CHAIN,
    maxAmount: "0.05",
  });
  const response = await fetchWithPayment(env.AWX_SDK_PAID_URL);
  assert.equal(response.status, 200);
  assert.equal((await response.json()).served_by, "awx-x402-axum");
  const info = paymentInfo(response);
  assert.ok(info.ledgerId.startsWith("ldg_"));
  assert.equal(info.amount, env.AWX_SDK_PRICE);
  assert.equal(info.paymentResponse.success, true);
  assert.equal(info.paymentResponse.extensions.awx.paymentId, info.ledgerId);
  assert.equal((await client.x402.getPayment(info.ledgerId)).state, "captured");
  assert.ok((await client.x402.feeTiers()).tiers.length > 0);
});

test("a URL that is not x402 passes through untouched", async () => {
  const fetchWithPayment = aw().x402.httpInterceptor({ agentId: env.AWX_SDK_AGENT });
  const plain = await fetchWithPayment(env.AWX_SDK_PLAIN_URL);
  assert.equal(plain.status, 200);
  assert.equal(await plain.text(), "free");
  assert.equal(paymentInfo(plain), undefined);
  const missing = await fetchWithPayment(`${env.AWX_SDK_PLAIN_URL}-not-there`);
  assert.equal(missing.status, 404);
  assert.equal(paymentInfo(missing), undefined);
});

test("a price above the maximum is not paid", async () => {
  const fetchWithPayment = aw().x402.httpInterceptor({ agentId: env.AWX_SDK_AGENT, maxAmount: "0.009" });
  await assert.rejects(fetchWithPayment(env.AWX_SDK_PAID_URL), (error) => {
    assert.ok(error instanceof PaymentRefusedError);
    assert.equal(error.reason, "above_maximum");
    return true;
  });
  assert.throws(() => aw().x402.httpInterceptor({ agentId: env.AWX_SDK_AGENT, maxAmount: 0.05 }), TypeError);
});

test("a policy refusal is a typed error with its rule", async () => {
  const fetchWithPayment = aw().x402.httpInterceptor({ agentId: env.AWX_SDK_LIMITED_AGENT });
  await assert.rejects(fetchWithPayment(env.AWX_SDK_PAID_URL), (error) => {
    assert.ok(error instanceof AwxError);
    assert.equal(error.status, 403);
    assert.equal(error.code, "policy_denied");
    assert.equal(error.rule, "policy.per_payment_max");
    assert.ok(error.requestId.startsWith("req_"));
    return true;
  });
});

test("a session's budget is spent exactly and its URLs are kept", async () => {
  const client = aw();
  const session = await client.x402.createSession({
    agentId: env.AWX_SDK_SESSION_AGENT,
    budgetLimit: "0.03",
    ttlSeconds: 600,
    allowedUrls: [env.AWX_SDK_PAID_URL],
  });
  const fetchWithPayment = client.x402.httpInterceptor({ agentId: env.AWX_SDK_SESSION_AGENT, sessionId: session.id });
  await assert.rejects(fetchWithPayment(env.AWX_SDK_OTHER_PAID_URL), (error) => {
    assert.equal(error.rule, "session.allowed_urls");
    return true;
  });
  for (let paid = 0; paid < 3; paid++) {
    assert.equal((await fetchWithPayment(env.AWX_SDK_PAID_URL)).status, 200);
  }
  await assert.rejects(fetchWithPayment(env.AWX_SDK_PAID_URL), (error) => {
    assert.ok(error instanceof AwxError);
    assert.equal(error.status, 403);
    assert.equal(error.rule, "session.budget_limit");
    return true;
  });
  const after = await client.x402.getSession(session.id);
  assert.equal(after.spent, "0.03");
  assert.equal(after.remaining, "0.00");
});

test("a second 402 after paying is an error, not a second payment", async () => {
  const fetchWithPayment = aw().x402.httpInterceptor({ agentId: env.AWX_SDK_REFUSING_AGENT });
  await assert.rejects(fetchWithPayment(env.AWX_SDK_REFUSING_URL), (error) => {
    assert.ok(error instanceof PaidButRefusedError);
    assert.ok(error.ledgerId.startsWith("ldg_"));
    return true;
  });
});

test("the manual flow: pay, then call the target with the payment's header", async () => {
  const client = aw();
  const payment = await client.x402.pay({ agentId: env.AWX_SDK_AGENT, targetUrl: env.AWX_SDK_PAID_URL });
  assert.equal(payment.status, "completed");
  assert.equal(payment.amount, env.AWX_SDK_PRICE);
  const response = await fetch(env.AWX_SDK_PAID_URL, {
    headers: { [payment.payment_header]: payment.payment_signature },
  });
  assert.equal(response.status, 200);
  assert.equal((await client.x402.getPayment(payment.ledger_id)).state, "captured");
});
