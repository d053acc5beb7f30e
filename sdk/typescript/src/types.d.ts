// The API's schemas, generated from openapi/openapi.json by tools/gen-types.mjs.
// Do not edit: regenerate with `node sdk/typescript/tools/gen-types.mjs`; a test fails when this file drifts.

/** An account. */
export interface AccountView {
  created_at: string;
  id: string;
  name: string;
  rate_limits: Record<string, unknown>;
}

/** The account's agents. */
export interface AgentListResponse {
  agents: Array<AgentResponse>;
}

/** An agent. */
export interface AgentResponse {
  address: string;
  balances?: Array<BalanceView> | null;
  created_at: number;
  default_chain: string;
  id: string;
  name: string;
  policy: PolicyBody;
  status: string;
}

/** A wallet balance. */
export interface BalanceView {
  asset: string;
  available: string;
  chain: string;
  held: string;
  token?: string | null;
}

/** An agent's balances. */
export interface BalancesView {
  agent_id: string;
  balances: Array<BalanceView>;
}

/** A check request. */
export interface CheckRequest {
  url: string;
}

/** What the check found. */
export interface CheckResponse {
  accepts: Array<Record<string, unknown>>;
  final_url?: string | null;
  payable: Array<PayableOffer>;
  reason?: string | null;
  resource?: Record<string, unknown> | null;
  status: number;
  unpayable: Array<UnpayableOffer>;
  url: string;
  x402: boolean;
  x402_version?: number | null;
}

/** A new agent. */
export interface CreateAgentRequest {
  default_chain?: string | null;
  name: string;
  policy?: PolicyBody | null;
}

/** A request to create a key. */
export interface CreateKeyRequest {
  name: string;
  scopes: Array<Scope>;
}

/** A new session. */
export interface CreateSessionRequest {
  agent_id: string;
  allowed_urls?: Array<string>;
  budget_limit: string;
  chain?: string | null;
  ttl_seconds: number;
}

/** A key just created or rotated: the only time its secret is shown. */
export type CreatedKey = KeyView & {
  api_key?: string | null;
};

/** An admin's decision. */
export interface DecisionRequest {
  reason?: string | null;
}

/** A page of an agent's deposits, newest first. */
export interface DepositPage {
  data: Array<DepositResponse>;
  next_cursor?: string | null;
}

/** One deposit: a token transfer into the agent's wallet. */
export interface DepositResponse {
  amount: string;
  amount_atomic: string;
  block_hash: string;
  block_number: number;
  chain: string;
  created_at: number;
  from: string;
  id: string;
  log_index: number;
  reversal_reason: string | null;
  source: DepositSourceView;
  state: string;
  to: string;
  token: string;
  tx_hash: string;
}

/** Where a deposit came from. */
export type DepositSourceView = "chain" | "faucet";

/** An EIP-3009 transfer authorization. */
export interface Eip3009Authorization {
  from: string;
  nonce: string;
  to: string;
  validAfter: string;
  validBefore: string;
  value: string;
}

/** The error envelope's body. */
export interface ErrorBody {
  error: ErrorDetail;
}

/** A stable, machine-readable error code. Clients may match on these; they never change meaning. */
export type ErrorCode = "malformed_json" | "invalid_field" | "invalid_request" | "unsupported_media_type" | "payload_too_large" | "headers_too_large" | "missing_api_key" | "invalid_api_key" | "api_key_revoked" | "insufficient_scope" | "not_found" | "method_not_allowed" | "idempotency_key_reused" | "idempotency_key_in_progress" | "invalid_idempotency_key" | "rate_limited" | "too_many_failed_authentications" | "conflict" | "insufficient_funds" | "policy_denied" | "session_budget_exceeded" | "session_expired" | "session_revoked" | "session_not_applicable" | "not_x402" | "no_payable_offer" | "chain_not_offered" | "payment_state" | "session_state" | "agent_state" | "api_key_state" | "faucet_unavailable" | "network_not_supported" | "withdrawal_address_not_allowed" | "withdrawal_conflict" | "invalid_target_url" | "target_not_allowed" | "target_unreachable" | "target_timeout" | "target_response_too_large" | "target_too_many_redirects" | "signer_refused" | "service_unavailable" | "timeout" | "internal_error";

/** The error inside the envelope. */
export interface ErrorDetail {
  code: ErrorCode;
  field?: string | null;
  message: string;
  request_id: string;
  rule?: string | null;
  type: ErrorType;
}

/** Which side an error is on. */
export type ErrorType = "invalid_request_error" | "authentication_error" | "permission_error" | "rate_limit_error" | "api_error";

/** The `exact` scheme's payload on EVM chains. */
export interface ExactEvmPayload {
  authorization: Eip3009Authorization;
  signature: string;
}

/** `POST /verify` and `POST /settle`: the payment and the requirements it answers. */
export interface FacilitatorRequest {
  paymentPayload: PaymentPayload;
  paymentRequirements: PaymentRequirements;
  x402Version: number;
}

/** The fee schedule and the caller's tier. */
export interface FeeTiersView {
  current_tier: string;
  effective_from: string;
  fee_rate: string;
  schedule_version: number;
  tiers: Array<TierView>;
  volume_30d: string;
}

/** Funds from the development faucet. */
export interface FundRequest {
  amount: string;
  chain?: string | null;
}

/** What the faucet did. */
export interface FundResponse {
  amount: string;
  balances: Array<BalanceView>;
  chain: string;
  tx_hash: string;
}

/** What the envelope refuses with (documentation only): Gate's envelope when the action itself */
export type GateRefusal = GateResponse | ErrorBody;

/** An action request. */
export interface GateRequest {
  action: string;
  params?: unknown;
}

/** The envelope of every answer. */
export interface GateResponse {
  code: number;
  data: unknown;
  msg: string;
  timestamp: number;
}

/** A page of keys. */
export interface KeyList {
  data: Array<KeyView>;
  next_cursor?: string | null;
}

/** Whether a key works. */
export type KeyStatus = "active" | "revoked" | "expired";

/** An API key (never its secret). */
export interface KeyView {
  created_at: string;
  expires_at?: string | null;
  id: string;
  name: string;
  revoked_at?: string | null;
  rotated_to?: string | null;
  scopes: Array<Scope>;
  status: KeyStatus;
}

/** What a statement line records. */
export type LineType = "deposit" | "deposit_reversal" | "withdrawal_hold" | "withdrawal" | "hold" | "capture" | "release" | "expiry" | "transfer";

/** A payment to make. */
export interface PayRequest {
  agent_id: string;
  chain?: string | null;
  session_id?: string | null;
  target_url: string;
}

/** An offer the platform can pay. */
export interface PayableOffer {
  amount: string;
  asset: string;
  index: number;
  network: string;
  pay_to: string;
  scheme: string;
  token: string;
}

/** Why a payment failed. */
export interface PaymentErrorView {
  code: string;
  message: string;
}

/** A client's payment: the offer it accepted and the signed authorization. */
export interface PaymentPayload {
  accepted: PaymentRequirements;
  extensions?: Record<string, unknown> | null;
  payload: ExactEvmPayload;
  resource?: ResourceInfo | null;
  x402Version: number;
}

/** An offer: scheme, network, amount and asset, and who is paid. */
export interface PaymentRequirements {
  amount: string;
  asset: string;
  extra?: Record<string, unknown> | null;
  maxTimeoutSeconds: number;
  network: string;
  payTo: string;
  scheme: string;
}

/** A payment. */
export interface PaymentResponse {
  agent_id: string;
  amount: string;
  chain: string;
  created_at: number;
  error?: PaymentErrorView | null;
  fee_amount: string;
  fee_rate: string;
  ledger_id: string;
  pay_to: string;
  payment_header: string;
  payment_signature?: string | null;
  session_id?: string | null;
  settlement?: PaymentSettlementView | null;
  state: string;
  status: string;
  target_url: string;
  token: string;
  valid_before?: number | null;
}

/** A payment's settlement on chain (payments of our agents captured through our facilitator). */
export interface PaymentSettlementView {
  error?: string | null;
  settle_by: number;
  settled_at?: number | null;
  settlement_id?: string | null;
  state: string;
  transaction?: string | null;
}

/** A spending policy. Limits are US dollars as decimal strings, at most 1000000000 ($1e9); an */
export interface PolicyBody {
  allowed_chains?: Array<string>;
  allowed_urls?: Array<string>;
  approval_threshold?: string | null;
  daily_limit?: string | null;
  payee_allowlist?: Array<string>;
  per_payment_max?: string | null;
}

/** The answer to `ping`. */
export interface Pong {
  account_id: string;
  key_id: string;
  ok: boolean;
}

/** One rate: a sustained number of requests per second and the burst allowed at once. */
export interface Rate {
  burst: number;
  per_second: number;
}

/** The resource a payment is for. */
export interface ResourceInfo {
  description?: string | null;
  mimeType?: string | null;
  url: string;
}

/** A request to rotate a key. */
export interface RotateKeyRequest {
  grace_seconds?: number;
}

/** What a key may do. */
export type Scope = "agent" | "provider" | "admin";

/** A payment from a session. */
export interface SessionPayRequest {
  target_url: string;
}

/** A session. */
export interface SessionResponse {
  agent_id: string;
  allowed_urls: Array<string>;
  budget_limit: string;
  chain: string;
  created_at: number;
  expires_at: number;
  id: string;
  remaining: string;
  reserved: string;
  spent: string;
  status: string;
}

/** The answer of `POST /settle`. */
export interface SettleResponse {
  errorMessage?: string | null;
  errorReason?: string | null;
  extensions?: Record<string, unknown> | null;
  network: string;
  payer?: string | null;
  success: boolean;
  transaction: string;
}

/** A page of settlements, newest first. */
export interface SettlementPage {
  data: Array<SettlementResponse>;
  next_cursor?: string | null;
}

/** One net transfer to the provider: the sum of one agent's payments to one payee address, */
export interface SettlementResponse {
  amount: string;
  attempts: number;
  chain: string;
  created_at: number;
  error?: string | null;
  id: string;
  payee: string;
  payer: string;
  payments: Array<string>;
  state: string;
  token: string;
  transaction?: string | null;
}

/** One statement line: one movement of the wallet, gross. The previous line's */
export interface StatementLineView {
  asset: string;
  available_after: string;
  chain: string;
  created_at: string;
  credit: string;
  debit: string;
  held_after: string;
  ledger_id: string;
  type: LineType;
}

/** A page of a statement. */
export interface StatementView {
  data: Array<StatementLineView>;
  next_cursor?: number | null;
}

/** One tier of the fee schedule. */
export interface TierView {
  fee_rate: string;
  name: string;
  volume_from: string;
  volume_to?: string | null;
}

/** An offer the platform cannot pay. */
export interface UnpayableOffer {
  index: number;
  reason: string;
}

/** The answer of `POST /verify`: an invalid payment is `isValid: false` with the reason. */
export interface VerifyResponse {
  extensions?: Record<string, unknown> | null;
  invalidMessage?: string | null;
  invalidReason?: string | null;
  isValid: boolean;
  payer?: string | null;
}

/** The account's withdrawal allow-list. */
export interface WithdrawalAddressesBody {
  addresses: Array<string>;
}

/** A page of an agent's withdrawals, newest first. */
export interface WithdrawalPage {
  data: Array<WithdrawalResponse>;
  next_cursor?: string | null;
}

/** A withdrawal to request. */
export interface WithdrawalRequest {
  amount: string;
  chain?: string | null;
  to: string;
}

/** A withdrawal. */
export interface WithdrawalResponse {
  agent_id: string;
  amount: string;
  amount_atomic: string;
  chain: string;
  created_at: number;
  error: string | null;
  from: string;
  id: string;
  state: string;
  to: string;
  token: string;
  tx_hash: string | null;
}
