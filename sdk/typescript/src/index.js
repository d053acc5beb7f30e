// The awx SDK for JavaScript and TypeScript (ES modules; declarations in index.d.ts, the API's
// schemas in types.d.ts, generated from openapi/openapi.json). No runtime dependency beyond fetch.
//
//   const aw = new AgentWallex({ apiKey, baseUrl });
//   const fetchWithPayment = aw.x402.httpInterceptor({ agentId, chain, maxAmount: "0.05" });
//   const response = await fetchWithPayment("https://paid-api.example.com/v1/data");
//
// The interceptor sends each request once as it is; any answer but a 402 is returned untouched.
// On a 402 it checks the price first when a maximum is set (POST /x402/check: every payable offer
// on the chain must be within the maximum, compared as decimals, never floats), pays once
// (POST /x402/pay, or the session's pay) with an Idempotency-Key derived from the request (so a
// lost answer asked again never pays twice), and retries once with the header the payment
// returned. A second 402 is a PaidButRefusedError, never a second payment. A URL outside a
// session's allowed URLs is refused by the platform (AwxError, rule session.allowed_urls), and
// nothing is paid.

const RETRIES = 3;
const paid = new WeakMap();

/** The platform refused a request: its error envelope. */
export class AwxError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(`${status} ${error.code ?? "unexpected_response"}: ${error.message ?? ""}`);
    this.name = "AwxError";
    this.status = status;
    this.code = error.code ?? "unexpected_response";
    this.type = error.type;
    this.rule = error.rule;
    this.field = error.field;
    this.requestId = error.request_id;
  }
}

/** The interceptor did not pay: the price is above the maximum, or the payment is not completed. */
export class PaymentRefusedError extends Error {
  constructor(reason, message) {
    super(message);
    this.name = "PaymentRefusedError";
    this.reason = reason;
  }
}

/** The target answered 402 again after it was paid. */
export class PaidButRefusedError extends Error {
  constructor(ledgerId, response) {
    super(`paid (${ledgerId}) but the target answered 402 again`);
    this.name = "PaidButRefusedError";
    this.ledgerId = ledgerId;
    this.response = response;
  }
}

/** What the interceptor paid for this answer, or undefined. */
export function paymentInfo(response) {
  return paid.get(response);
}

/** A decimal string as an integer scaled by 10^18 (exact; no floats). */
function scaled(amount) {
  if (typeof amount !== "string" || !/^\d+(\.\d+)?$/.test(amount)) {
    throw new TypeError(`${JSON.stringify(amount)} is not a decimal string such as "0.05"`);
  }
  const [whole, fraction = ""] = amount.split(".");
  if (fraction.length > 18) throw new TypeError(`${amount} has more than 18 decimals`);
  return BigInt(whole) * 10n ** 18n + BigInt(fraction.padEnd(18, "0"));
}

function decodePaymentResponse(response) {
  const value = response.headers.get("payment-response") ?? response.headers.get("x-payment-response");
  if (!value) return undefined;
  try {
    return JSON.parse(Buffer.from(value, "base64").toString("utf8"));
  } catch {
    return undefined;
  }
}

async function idempotencyKey(request) {
  const own = request.headers.get("idempotency-key");
  if (!own) return crypto.randomUUID();
  const bytes = new TextEncoder().encode(`awx-x402-pay\n${request.method}\n${request.url}\n${own}`);
  const hex = Buffer.from(await crypto.subtle.digest("SHA-256", bytes)).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function retryable(response) {
  return response === undefined || response.status >= 500;
}

export class AgentWallex {
  /** @param {{apiKey: string, baseUrl?: string, fetch?: typeof fetch}} options */
  constructor({ apiKey, baseUrl = "http://127.0.0.1:8080", fetch: fetcher = globalThis.fetch } = {}) {
    if (!apiKey) throw new TypeError("apiKey is required");
    Object.defineProperty(this, "apiKey", { value: apiKey, enumerable: false });
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.fetch = fetcher;
    this.x402 = new X402(this);
  }

  /** Sends one call; one with an Idempotency-Key is repeated with it after a network failure or a 5xx. */
  async request(method, path, body, key) {
    const headers = { "x-api-key": this.apiKey };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (key !== undefined) headers["idempotency-key"] = key;
    const attempts = key === undefined ? 1 : RETRIES;
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await this.fetch(this.baseUrl + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (error) {
        if (attempt >= attempts) throw error;
      }
      if (attempt < attempts && retryable(response)) continue;
      const answer = await response.json().catch(() => undefined);
      if (!response.ok) throw new AwxError(response.status, answer);
      return answer;
    }
  }
}

function withoutUndefined(values) {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined));
}

class X402 {
  constructor(client) {
    this.client = client;
  }

  createSession({ agentId, budgetLimit, chain, ttlSeconds, allowedUrls }) {
    scaled(budgetLimit);
    const body = withoutUndefined({
      agent_id: agentId,
      budget_limit: budgetLimit,
      chain,
      ttl_seconds: ttlSeconds,
      allowed_urls: allowedUrls,
    });
    return this.client.request("POST", "/api/v1/x402/sessions", body, crypto.randomUUID());
  }

  getSession(sessionId) {
    return this.client.request("GET", `/api/v1/x402/sessions/${encodeURIComponent(sessionId)}`);
  }

  pay({ agentId, targetUrl, sessionId, chain, idempotencyKey: key }) {
    const body = withoutUndefined({ agent_id: agentId, target_url: targetUrl, session_id: sessionId, chain });
    return this.client.request("POST", "/api/v1/x402/pay", body, key ?? crypto.randomUUID());
  }

  sessionPay(sessionId, { targetUrl, idempotencyKey: key }) {
    const path = `/api/v1/x402/sessions/${encodeURIComponent(sessionId)}/pay`;
    return this.client.request("POST", path, { target_url: targetUrl }, key ?? crypto.randomUUID());
  }

  check(url) {
    return this.client.request("POST", "/api/v1/x402/check", { url });
  }

  getPayment(ledgerId) {
    return this.client.request("GET", `/api/v1/x402/payments/${encodeURIComponent(ledgerId)}`);
  }

  feeTiers() {
    return this.client.request("GET", "/api/v1/x402/fees/tiers");
  }

  /** A fetch-compatible function that pays 402s with the agent's wallet (or the session). */
  httpInterceptor({ agentId, chain, sessionId, maxAmount, fetch: fetcher = this.client.fetch }) {
    const maximum = maxAmount === undefined ? undefined : scaled(maxAmount);
    return async (input, init) => {
      const request = new Request(input, init);
      const body = request.body === null ? undefined : await request.arrayBuffer();
      const first = await fetcher(new Request(request, { body }));
      if (first.status !== 402) return first;
      await first.arrayBuffer().catch(() => undefined);
      const url = request.url;
      if (maximum !== undefined) {
        const checked = await this.check(url);
        for (const offer of checked.payable ?? []) {
          if (chain !== undefined && offer.network !== chain) continue;
          if (scaled(offer.amount) > maximum) {
            throw new PaymentRefusedError(
              "above_maximum",
              `the price ${offer.amount} ${offer.token ?? ""} is above the maximum ${maxAmount}`,
            );
          }
        }
      }
      const key = await idempotencyKey(request);
      const payment =
        sessionId === undefined
          ? await this.pay({ agentId, targetUrl: url, chain, idempotencyKey: key })
          : await this.sessionPay(sessionId, { targetUrl: url, idempotencyKey: key });
      if (payment.status !== "completed" || !payment.payment_signature) {
        throw new PaymentRefusedError("not_completed", `the payment ${payment.ledger_id} is ${payment.status}, not completed`);
      }
      const headers = new Headers(request.headers);
      headers.set(payment.payment_header || "PAYMENT-SIGNATURE", payment.payment_signature);
      const retried = await fetcher(new Request(request, { headers, body }));
      if (retried.status === 402) {
        await retried.arrayBuffer().catch(() => undefined);
        throw new PaidButRefusedError(payment.ledger_id, retried);
      }
      paid.set(retried, {
        ledgerId: payment.ledger_id,
        amount: payment.amount,
        feeAmount: payment.fee_amount,
        token: payment.token,
        chain: payment.chain,
        paymentResponse: decodePaymentResponse(retried),
      });
      return retried;
    };
  }
}
