// Declarations of the awx SDK (src/index.js). The API's schemas are in types.d.ts, generated
// from openapi/openapi.json.
import type {
  CheckResponse,
  FeeTiersView,
  PaymentResponse,
  SessionResponse,
} from "./types.js";

export type * from "./types.js";

/** The platform refused a request: its error envelope. */
export declare class AwxError extends Error {
  readonly status: number;
  readonly code: string;
  readonly type?: string;
  /** The policy or session rule that refused, such as `policy.daily_limit`. */
  readonly rule?: string;
  readonly field?: string;
  readonly requestId?: string;
}

/** The interceptor did not pay: `above_maximum`, or `not_completed` (waiting for approval). */
export declare class PaymentRefusedError extends Error {
  readonly reason: "above_maximum" | "not_completed";
}

/** The target answered 402 again after it was paid: never a reason to pay again. */
export declare class PaidButRefusedError extends Error {
  readonly ledgerId: string;
  readonly response: Response;
}

/** What the interceptor paid for an answer. */
export interface PaymentInfo {
  ledgerId: string;
  /** Decimal strings in the token. */
  amount: string;
  feeAmount: string;
  token: string;
  chain: string;
  /** The provider's decoded `PAYMENT-RESPONSE` (for awx's deferred settlement,
   * `extensions.awx.paymentId` is the ledger id). */
  paymentResponse?: Record<string, unknown>;
}

/** What the interceptor paid for this answer, or undefined when it was not paid. */
export declare function paymentInfo(response: Response): PaymentInfo | undefined;

export interface InterceptorOptions {
  agentId: string;
  /** The CAIP-2 chain to pay on (the session's, then the agent's default, when absent). */
  chain?: string;
  /** Pay from this session. */
  sessionId?: string;
  /** The most to pay for one request, a decimal string such as `"0.05"`. */
  maxAmount?: string;
  /** The fetch to send requests with (the client's by default). */
  fetch?: typeof fetch;
}

export declare class X402 {
  createSession(options: {
    agentId: string;
    /** Dollars, a decimal string. */
    budgetLimit: string;
    ttlSeconds: number;
    chain?: string;
    allowedUrls?: string[];
  }): Promise<SessionResponse>;
  getSession(sessionId: string): Promise<SessionResponse>;
  pay(options: {
    agentId: string;
    targetUrl: string;
    sessionId?: string;
    chain?: string;
    idempotencyKey?: string;
  }): Promise<PaymentResponse>;
  sessionPay(sessionId: string, options: { targetUrl: string; idempotencyKey?: string }): Promise<PaymentResponse>;
  check(url: string): Promise<CheckResponse>;
  getPayment(ledgerId: string): Promise<PaymentResponse>;
  feeTiers(): Promise<FeeTiersView>;
  /** A fetch-compatible function that pays 402s (see the module docs of index.js). */
  httpInterceptor(options: InterceptorOptions): (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;
}

export declare class AgentWallex {
  constructor(options: { apiKey: string; baseUrl?: string; fetch?: typeof fetch });
  readonly baseUrl: string;
  readonly x402: X402;
  /** One API call; answers the JSON body, or throws AwxError. */
  request(method: string, path: string, body?: unknown, idempotencyKey?: string): Promise<unknown>;
}
