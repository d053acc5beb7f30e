"""`client.x402`: sessions, pay, session pay, check, payments, fee tiers, and the httpx transports
that pay a 402 (`client.x402.http_client(...)`).

The interceptor sends each request once as it is; any answer but a 402 is returned untouched.
On a 402 it first checks the price when a maximum is set (`POST /x402/check`: every payable offer
on the chain must be within the maximum, compared as decimals, or nothing is paid), then pays once
(`POST /x402/pay`, or the session's pay) with an `Idempotency-Key` derived from the request, so a
lost answer asked again never pays twice, and retries the request once with the header the payment
returned. A second 402 is `PaidButRefused`, never a second payment. A URL outside a session's
allowed URLs is refused by the platform (`AwxError` with the rule `session.allowed_urls`), and
nothing is paid.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import httpx

from ._client import Call, _Calls, _check_amount
from .errors import PaidButRefused, PaymentRefused

if TYPE_CHECKING:
    from ._client import AgentWallex, AsyncAgentWallex

PAYMENT_INFO = "awx_payment"


def payment_info(response: httpx.Response) -> Optional[Dict[str, Any]]:
    """What the interceptor paid for this answer: `ledger_id`, `amount`, `fee_amount`, `token`,
    `chain`, and `payment_response` (the provider's decoded `PAYMENT-RESPONSE`, with its
    `transaction` and, for awx's deferred settlement, `extensions.awx.paymentId`); None when the
    answer was not paid."""
    info = response.extensions.get(PAYMENT_INFO)
    return info if isinstance(info, dict) else None


def _decode_payment_response(response: httpx.Response) -> Optional[Dict[str, Any]]:
    value = response.headers.get("payment-response") or response.headers.get("x-payment-response")
    if not value:
        return None
    try:
        padded = value + "=" * (-len(value) % 4)
        decoded = json.loads(base64.b64decode(padded))
        return decoded if isinstance(decoded, dict) else None
    except (ValueError, TypeError):
        return None


def _idempotency_key(request: httpx.Request) -> str:
    """One key per intercepted request; derived from the request's own Idempotency-Key when it has
    one, so the caller's retry of the same request pays once."""
    own = request.headers.get("idempotency-key")
    if own:
        digest = hashlib.sha256(f"awx-x402-pay\n{request.method}\n{request.url}\n{own}".encode()).hexdigest()
        return str(uuid.UUID(digest[:32]))
    return str(uuid.uuid4())


def _maximum(max_amount: Optional[Union[str, Decimal]]) -> Optional[Decimal]:
    if max_amount is None:
        return None
    if isinstance(max_amount, float):
        raise TypeError("max_amount is a decimal string such as \"0.05\", never a float")
    try:
        value = Decimal(str(max_amount))
    except InvalidOperation as error:
        raise ValueError(f"max_amount {max_amount!r} is not a decimal amount") from error
    if value < 0:
        raise ValueError("max_amount may not be negative")
    return value


def _above_maximum(check: Dict[str, Any], chain: Optional[str], maximum: Decimal) -> Optional[str]:
    offers: List[Dict[str, Any]] = [
        offer for offer in check.get("payable", []) if chain is None or offer.get("network") == chain
    ]
    for offer in offers:
        if Decimal(str(offer["amount"])) > maximum:
            return f"the price {offer['amount']} {offer.get('token', '')} is above the maximum {maximum}"
    return None


def _paid_request(request: httpx.Request, paid: Dict[str, Any]) -> httpx.Request:
    headers = httpx.Headers(request.headers)
    headers[paid.get("payment_header") or "PAYMENT-SIGNATURE"] = paid["payment_signature"]
    return httpx.Request(request.method, request.url, headers=headers, content=request.content, extensions=request.extensions)


def _settled(response: httpx.Response, paid: Dict[str, Any]) -> httpx.Response:
    response.extensions = {
        **response.extensions,
        PAYMENT_INFO: {
            "ledger_id": paid["ledger_id"],
            "amount": paid["amount"],
            "fee_amount": paid["fee_amount"],
            "token": paid.get("token"),
            "chain": paid.get("chain"),
            "payment_response": _decode_payment_response(response),
        },
    }
    return response


class _Settings:
    def __init__(
        self,
        agent_id: str,
        chain: Optional[str],
        session_id: Optional[str],
        max_amount: Optional[Union[str, Decimal]],
    ) -> None:
        self.agent_id = agent_id
        self.chain = chain
        self.session_id = session_id
        self.maximum = _maximum(max_amount)

    def pay_call(self, url: str, key: str) -> Call:
        if self.session_id is not None:
            return _Calls.session_pay(self.session_id, url, key)
        return _Calls.pay(self.agent_id, url, None, self.chain, key)


def _completed(paid: Dict[str, Any]) -> Dict[str, Any]:
    if paid.get("status") != "completed" or not paid.get("payment_signature"):
        raise PaymentRefused(
            "not_completed", f"the payment {paid.get('ledger_id')} is {paid.get('status')}, not completed"
        )
    return paid


class PayingTransport(httpx.BaseTransport):
    """An httpx transport that pays 402s through the platform (see the module docs)."""

    def __init__(self, x402: "X402", settings: _Settings, inner: Optional[httpx.BaseTransport] = None) -> None:
        self._x402 = x402
        self._settings = settings
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        response = self._inner.handle_request(request)
        if response.status_code != 402:
            return response
        response.read()
        response.close()
        url = str(request.url)
        if self._settings.maximum is not None:
            refusal = _above_maximum(self._x402.check(url), self._settings.chain, self._settings.maximum)
            if refusal is not None:
                raise PaymentRefused("above_maximum", refusal)
        paid = _completed(self._x402._client.request(self._settings.pay_call(url, _idempotency_key(request))))
        retried = self._inner.handle_request(_paid_request(request, paid))
        if retried.status_code == 402:
            retried.read()
            retried.close()
            raise PaidButRefused(paid["ledger_id"], retried)
        return _settled(retried, paid)

    def close(self) -> None:
        self._inner.close()


class AsyncPayingTransport(httpx.AsyncBaseTransport):
    """The async form of `PayingTransport`."""

    def __init__(
        self, x402: "AsyncX402", settings: _Settings, inner: Optional[httpx.AsyncBaseTransport] = None
    ) -> None:
        self._x402 = x402
        self._settings = settings
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await self._inner.handle_async_request(request)
        if response.status_code != 402:
            return response
        await response.aread()
        await response.aclose()
        url = str(request.url)
        if self._settings.maximum is not None:
            refusal = _above_maximum(await self._x402.check(url), self._settings.chain, self._settings.maximum)
            if refusal is not None:
                raise PaymentRefused("above_maximum", refusal)
        paid = _completed(await self._x402._client.request(self._settings.pay_call(url, _idempotency_key(request))))
        retried = await self._inner.handle_async_request(_paid_request(request, paid))
        if retried.status_code == 402:
            await retried.aread()
            await retried.aclose()
            raise PaidButRefused(paid["ledger_id"], retried)
        return _settled(retried, paid)

    async def aclose(self) -> None:
        await self._inner.aclose()


class X402:
    """`client.x402` of `AgentWallex`."""

    def __init__(self, client: "AgentWallex") -> None:
        self._client = client

    def pay(
        self,
        agent_id: str,
        target_url: str,
        *,
        session_id: Optional[str] = None,
        chain: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Pays for `target_url` (`POST /api/v1/x402/pay`); the answer's `payment_signature` goes in `payment_header`."""
        key = idempotency_key or str(uuid.uuid4())
        return self._client.request(_Calls.pay(agent_id, target_url, session_id, chain, key))  # type: ignore[no-any-return]

    def session_pay(self, session_id: str, target_url: str, *, idempotency_key: Optional[str] = None) -> Dict[str, Any]:
        """Pays from a session (`POST /api/v1/x402/sessions/{id}/pay`)."""
        key = idempotency_key or str(uuid.uuid4())
        return self._client.request(_Calls.session_pay(session_id, target_url, key))  # type: ignore[no-any-return]

    def create_session(
        self,
        agent_id: str,
        budget_limit: str,
        ttl_seconds: int,
        *,
        allowed_urls: Optional[Sequence[str]] = None,
        chain: Optional[str] = None,
    ) -> Dict[str, Any]:
        """A session: a budget in dollars (a decimal string) for `ttl_seconds`, optionally limited to URLs."""
        _check_amount("budget_limit", budget_limit)
        return self._client.request(_Calls.create_session(agent_id, budget_limit, ttl_seconds, allowed_urls, chain))  # type: ignore[no-any-return]

    def get_session(self, session_id: str) -> Dict[str, Any]:
        return self._client.get(f"/api/v1/x402/sessions/{session_id}")  # type: ignore[no-any-return]

    def check(self, url: str) -> Dict[str, Any]:
        """Whether `url` takes x402, its offers, and which the platform can pay."""
        return self._client.request(("POST", "/api/v1/x402/check", {"url": url}, None))  # type: ignore[no-any-return]

    def get_payment(self, ledger_id: str) -> Dict[str, Any]:
        return self._client.get(f"/api/v1/x402/payments/{ledger_id}")  # type: ignore[no-any-return]

    def fee_tiers(self) -> Dict[str, Any]:
        return self._client.get("/api/v1/x402/fees/tiers")  # type: ignore[no-any-return]

    def http_client(
        self,
        agent_id: str,
        *,
        chain: Optional[str] = None,
        session_id: Optional[str] = None,
        max_amount: Optional[Union[str, Decimal]] = None,
        **httpx_options: Any,
    ) -> httpx.Client:
        """An `httpx.Client` whose requests pay 402s with the agent's wallet (or the session)."""
        transport = PayingTransport(self, _Settings(agent_id, chain, session_id, max_amount))
        return httpx.Client(transport=transport, **httpx_options)


class AsyncX402:
    """`client.x402` of `AsyncAgentWallex`."""

    def __init__(self, client: "AsyncAgentWallex") -> None:
        self._client = client

    async def pay(
        self,
        agent_id: str,
        target_url: str,
        *,
        session_id: Optional[str] = None,
        chain: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Dict[str, Any]:
        key = idempotency_key or str(uuid.uuid4())
        return await self._client.request(_Calls.pay(agent_id, target_url, session_id, chain, key))  # type: ignore[no-any-return]

    async def session_pay(
        self, session_id: str, target_url: str, *, idempotency_key: Optional[str] = None
    ) -> Dict[str, Any]:
        key = idempotency_key or str(uuid.uuid4())
        return await self._client.request(_Calls.session_pay(session_id, target_url, key))  # type: ignore[no-any-return]

    async def create_session(
        self,
        agent_id: str,
        budget_limit: str,
        ttl_seconds: int,
        *,
        allowed_urls: Optional[Sequence[str]] = None,
        chain: Optional[str] = None,
    ) -> Dict[str, Any]:
        _check_amount("budget_limit", budget_limit)
        return await self._client.request(_Calls.create_session(agent_id, budget_limit, ttl_seconds, allowed_urls, chain))  # type: ignore[no-any-return]

    async def get_session(self, session_id: str) -> Dict[str, Any]:
        return await self._client.get(f"/api/v1/x402/sessions/{session_id}")  # type: ignore[no-any-return]

    async def check(self, url: str) -> Dict[str, Any]:
        return await self._client.request(("POST", "/api/v1/x402/check", {"url": url}, None))  # type: ignore[no-any-return]

    async def get_payment(self, ledger_id: str) -> Dict[str, Any]:
        return await self._client.get(f"/api/v1/x402/payments/{ledger_id}")  # type: ignore[no-any-return]

    async def fee_tiers(self) -> Dict[str, Any]:
        return await self._client.get("/api/v1/x402/fees/tiers")  # type: ignore[no-any-return]

    def http_client(
        self,
        agent_id: str,
        *,
        chain: Optional[str] = None,
        session_id: Optional[str] = None,
        max_amount: Optional[Union[str, Decimal]] = None,
        **httpx_options: Any,
    ) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` whose requests pay 402s with the agent's wallet (or the session)."""
        transport = AsyncPayingTransport(self, _Settings(agent_id, chain, session_id, max_amount))
        return httpx.AsyncClient(transport=transport, **httpx_options)
