"""The API's schemas as TypedDicts, generated from openapi/openapi.json by tools/gen_types.py.

Do not edit: regenerate with `python sdk/python/tools/gen_types.py`; a test fails when this file drifts.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from typing import TypedDict


class AccountView(TypedDict, total=False):
    """An account. Required: created_at, id, name, rate_limits."""

    created_at: str
    id: str
    name: str
    rate_limits: Dict[str, Any]


class AgentListResponse(TypedDict, total=False):
    """The account's agents. Required: agents."""

    agents: List["AgentResponse"]


class AgentResponse(TypedDict, total=False):
    """An agent. Required: address, created_at, default_chain, id, name, policy, status."""

    address: str
    created_at: int
    default_chain: str
    id: str
    name: str
    policy: "PolicyBody"
    status: str
    balances: Optional[List["BalanceView"]]


class BalanceView(TypedDict, total=False):
    """A wallet balance. Required: asset, available, chain, held."""

    asset: str
    available: str
    chain: str
    held: str
    token: Optional[str]


class BalancesView(TypedDict, total=False):
    """An agent's balances. Required: agent_id, balances."""

    agent_id: str
    balances: List["BalanceView"]


class CheckRequest(TypedDict, total=False):
    """A check request. Required: url."""

    url: str


class CheckResponse(TypedDict, total=False):
    """What the check found. Required: accepts, payable, status, unpayable, url, x402."""

    accepts: List[Dict[str, Any]]
    payable: List["PayableOffer"]
    status: int
    unpayable: List["UnpayableOffer"]
    url: str
    x402: bool
    final_url: Optional[str]
    reason: Optional[str]
    resource: Optional[Dict[str, Any]]
    x402_version: Optional[int]


class CreateAgentRequest(TypedDict, total=False):
    """A new agent. Required: name."""

    name: str
    default_chain: Optional[str]
    policy: Any


class CreateKeyRequest(TypedDict, total=False):
    """A request to create a key. Required: name, scopes."""

    name: str
    scopes: List["Scope"]


class CreateSessionRequest(TypedDict, total=False):
    """A new session. Required: agent_id, budget_limit, ttl_seconds."""

    agent_id: str
    budget_limit: str
    ttl_seconds: int
    allowed_urls: List[str]
    chain: Optional[str]


class DecisionRequest(TypedDict, total=False):
    """An admin's decision. Required: none."""

    reason: Optional[str]


class DepositPage(TypedDict, total=False):
    """A page of an agent's deposits, newest first. Required: data."""

    data: List["DepositResponse"]
    next_cursor: Optional[str]


DepositResponse = TypedDict("DepositResponse", {"amount": str, "amount_atomic": str, "block_hash": str, "block_number": int, "chain": str, "created_at": int, "from": str, "id": str, "log_index": int, "reversal_reason": Optional[str], "source": "DepositSourceView", "state": str, "to": str, "token": str, "tx_hash": str}, total=False)


Eip3009Authorization = TypedDict("Eip3009Authorization", {"from": str, "nonce": str, "to": str, "validAfter": str, "validBefore": str, "value": str}, total=False)


class ErrorBody(TypedDict, total=False):
    """The error envelope's body. Required: error."""

    error: "ErrorDetail"


class ErrorDetail(TypedDict, total=False):
    """The error inside the envelope. Required: code, message, request_id, type."""

    code: "ErrorCode"
    message: str
    request_id: str
    type: "ErrorType"
    field: Optional[str]
    rule: Optional[str]


class ExactEvmPayload(TypedDict, total=False):
    """The `exact` scheme's payload on EVM chains. Required: authorization, signature."""

    authorization: "Eip3009Authorization"
    signature: str


class FacilitatorRequest(TypedDict, total=False):
    """`POST /verify` and `POST /settle`: the payment and the requirements it answers. Required: paymentPayload, paymentRequirements, x402Version."""

    paymentPayload: "PaymentPayload"
    paymentRequirements: "PaymentRequirements"
    x402Version: int


class FeeTiersView(TypedDict, total=False):
    """The fee schedule and the caller's tier. Required: current_tier, effective_from, fee_rate, schedule_version, tiers, volume_30d."""

    current_tier: str
    effective_from: str
    fee_rate: str
    schedule_version: int
    tiers: List["TierView"]
    volume_30d: str


class FundRequest(TypedDict, total=False):
    """Funds from the development faucet. Required: amount."""

    amount: str
    chain: Optional[str]


class FundResponse(TypedDict, total=False):
    """What the faucet did. Required: amount, balances, chain, tx_hash."""

    amount: str
    balances: List["BalanceView"]
    chain: str
    tx_hash: str


class GateRequest(TypedDict, total=False):
    """An action request. Required: action."""

    action: str
    params: Any


class GateResponse(TypedDict, total=False):
    """The envelope of every answer. Required: code, data, msg, timestamp."""

    code: int
    data: Any
    msg: str
    timestamp: int


class KeyList(TypedDict, total=False):
    """A page of keys. Required: data."""

    data: List["KeyView"]
    next_cursor: Optional[str]


class KeyView(TypedDict, total=False):
    """An API key (never its secret). Required: created_at, id, name, scopes, status."""

    created_at: str
    id: str
    name: str
    scopes: List["Scope"]
    status: "KeyStatus"
    expires_at: Optional[str]
    revoked_at: Optional[str]
    rotated_to: Optional[str]


class PayRequest(TypedDict, total=False):
    """A payment to make. Required: agent_id, target_url."""

    agent_id: str
    target_url: str
    chain: Optional[str]
    session_id: Optional[str]


class PayableOffer(TypedDict, total=False):
    """An offer the platform can pay. Required: amount, asset, index, network, pay_to, scheme, token."""

    amount: str
    asset: str
    index: int
    network: str
    pay_to: str
    scheme: str
    token: str


class PaymentErrorView(TypedDict, total=False):
    """Why a payment failed. Required: code, message."""

    code: str
    message: str


class PaymentPayload(TypedDict, total=False):
    """A client's payment: the offer it accepted and the signed authorization. Required: accepted, payload, x402Version."""

    accepted: "PaymentRequirements"
    payload: "ExactEvmPayload"
    x402Version: int
    extensions: Optional[Dict[str, Any]]
    resource: Any


class PaymentRequirements(TypedDict, total=False):
    """An offer: scheme, network, amount and asset, and who is paid. Required: amount, asset, maxTimeoutSeconds, network, payTo, scheme."""

    amount: str
    asset: str
    maxTimeoutSeconds: int
    network: str
    payTo: str
    scheme: str
    extra: Optional[Dict[str, Any]]


class PaymentResponse(TypedDict, total=False):
    """A payment. Required: agent_id, amount, chain, created_at, fee_amount, fee_rate, ledger_id, pay_to, payment_header, state, status, target_url, token."""

    agent_id: str
    amount: str
    chain: str
    created_at: int
    fee_amount: str
    fee_rate: str
    ledger_id: str
    pay_to: str
    payment_header: str
    state: str
    status: str
    target_url: str
    token: str
    error: Any
    payment_signature: Optional[str]
    session_id: Optional[str]
    settlement: Any
    valid_before: Optional[int]


class PaymentSettlementView(TypedDict, total=False):
    """A payment's settlement on chain (payments of our agents captured through our facilitator). Required: settle_by, state."""

    settle_by: int
    state: str
    error: Optional[str]
    settled_at: Optional[int]
    settlement_id: Optional[str]
    transaction: Optional[str]


class PolicyBody(TypedDict, total=False):
    """A spending policy. Limits are US dollars as decimal strings, at most 1000000000 ($1e9); an Required: none."""

    allowed_chains: List[str]
    allowed_urls: List[str]
    approval_threshold: Optional[str]
    daily_limit: Optional[str]
    payee_allowlist: List[str]
    per_payment_max: Optional[str]


class Pong(TypedDict, total=False):
    """The answer to `ping`. Required: account_id, key_id, ok."""

    account_id: str
    key_id: str
    ok: bool


class Rate(TypedDict, total=False):
    """One rate: a sustained number of requests per second and the burst allowed at once. Required: burst, per_second."""

    burst: int
    per_second: int


class ResourceInfo(TypedDict, total=False):
    """The resource a payment is for. Required: url."""

    url: str
    description: Optional[str]
    mimeType: Optional[str]


class RotateKeyRequest(TypedDict, total=False):
    """A request to rotate a key. Required: none."""

    grace_seconds: int


class SessionPayRequest(TypedDict, total=False):
    """A payment from a session. Required: target_url."""

    target_url: str


class SessionResponse(TypedDict, total=False):
    """A session. Required: agent_id, allowed_urls, budget_limit, chain, created_at, expires_at, id, remaining, reserved, spent, status."""

    agent_id: str
    allowed_urls: List[str]
    budget_limit: str
    chain: str
    created_at: int
    expires_at: int
    id: str
    remaining: str
    reserved: str
    spent: str
    status: str


class SettleResponse(TypedDict, total=False):
    """The answer of `POST /settle`. Required: network, success, transaction."""

    network: str
    success: bool
    transaction: str
    errorMessage: Optional[str]
    errorReason: Optional[str]
    extensions: Optional[Dict[str, Any]]
    payer: Optional[str]


class SettlementPage(TypedDict, total=False):
    """A page of settlements, newest first. Required: data."""

    data: List["SettlementResponse"]
    next_cursor: Optional[str]


class SettlementResponse(TypedDict, total=False):
    """One net transfer to the provider: the sum of one agent's payments to one payee address, Required: amount, attempts, chain, created_at, id, payee, payer, payments, state, token."""

    amount: str
    attempts: int
    chain: str
    created_at: int
    id: str
    payee: str
    payer: str
    payments: List[str]
    state: str
    token: str
    error: Optional[str]
    transaction: Optional[str]


class StatementLineView(TypedDict, total=False):
    """One statement line: one movement of the wallet, gross. The previous line's Required: asset, available_after, chain, created_at, credit, debit, held_after, ledger_id, type."""

    asset: str
    available_after: str
    chain: str
    created_at: str
    credit: str
    debit: str
    held_after: str
    ledger_id: str
    type: "LineType"


class StatementView(TypedDict, total=False):
    """A page of a statement. Required: data."""

    data: List["StatementLineView"]
    next_cursor: Optional[int]


class TierView(TypedDict, total=False):
    """One tier of the fee schedule. Required: fee_rate, name, volume_from."""

    fee_rate: str
    name: str
    volume_from: str
    volume_to: Optional[str]


class UnpayableOffer(TypedDict, total=False):
    """An offer the platform cannot pay. Required: index, reason."""

    index: int
    reason: str


class VerifyResponse(TypedDict, total=False):
    """The answer of `POST /verify`: an invalid payment is `isValid: false` with the reason. Required: isValid."""

    isValid: bool
    extensions: Optional[Dict[str, Any]]
    invalidMessage: Optional[str]
    invalidReason: Optional[str]
    payer: Optional[str]


class WithdrawalAddressesBody(TypedDict, total=False):
    """The account's withdrawal allow-list. Required: addresses."""

    addresses: List[str]


class WithdrawalPage(TypedDict, total=False):
    """A page of an agent's withdrawals, newest first. Required: data."""

    data: List["WithdrawalResponse"]
    next_cursor: Optional[str]


class WithdrawalRequest(TypedDict, total=False):
    """A withdrawal to request. Required: amount, to."""

    amount: str
    to: str
    chain: Optional[str]


WithdrawalResponse = TypedDict("WithdrawalResponse", {"agent_id": str, "amount": str, "amount_atomic": str, "chain": str, "created_at": int, "error": Optional[str], "from": str, "id": str, "state": str, "to": str, "token": str, "tx_hash": Optional[str]}, total=False)


# Schemas that are not objects.
CreatedKey = Any
DepositSourceView = str
ErrorCode = str
ErrorType = str
GateRefusal = Any
KeyStatus = str
LineType = str
Scope = str
