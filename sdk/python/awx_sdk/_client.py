"""The platform API, sync (`AgentWallex`) and async (`AsyncAgentWallex`).

Field names are the API's own (snake_case); answers are the JSON objects the API documents (their
shapes are the TypedDicts of `awx_sdk.types`, generated from `openapi/openapi.json`). Every
non-2xx answer raises `AwxError` from the error envelope. Amounts are decimal strings, never
floats.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Optional, Sequence, Tuple

import httpx

from .errors import AwxError

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
RETRIES = 3

# A request: method, path, JSON body (or None), Idempotency-Key (or None).
Call = Tuple[str, str, Optional[Dict[str, Any]], Optional[str]]


def _without_none(values: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class _Calls:
    """The requests of the x402 API, built once for both clients."""

    @staticmethod
    def pay(agent_id: str, target_url: str, session_id: Optional[str], chain: Optional[str], key: Optional[str]) -> Call:
        body = _without_none({"agent_id": agent_id, "target_url": target_url, "session_id": session_id, "chain": chain})
        return ("POST", "/api/v1/x402/pay", body, key)

    @staticmethod
    def session_pay(session_id: str, target_url: str, key: Optional[str]) -> Call:
        return ("POST", f"/api/v1/x402/sessions/{session_id}/pay", {"target_url": target_url}, key)

    @staticmethod
    def create_session(
        agent_id: str,
        budget_limit: str,
        ttl_seconds: int,
        allowed_urls: Optional[Sequence[str]],
        chain: Optional[str],
    ) -> Call:
        body = _without_none(
            {
                "agent_id": agent_id,
                "budget_limit": budget_limit,
                "ttl_seconds": ttl_seconds,
                "allowed_urls": list(allowed_urls) if allowed_urls is not None else None,
                "chain": chain,
            }
        )
        return ("POST", "/api/v1/x402/sessions", body, str(uuid.uuid4()))


def _check_amount(name: str, value: str) -> str:
    if isinstance(value, float) or not isinstance(value, str):
        raise TypeError(f"{name} is a decimal string such as \"0.10\", never a float")
    return value


class _Base:
    def __init__(self, api_key: str, base_url: str) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _headers(self, key: Optional[str]) -> Dict[str, str]:
        headers = {"X-API-Key": self._api_key}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise AwxError.from_response(response)
    return response.json()


def _retryable(response: Optional[httpx.Response]) -> bool:
    # No answer, a 5xx, or the same key still being worked on: asking again with the same
    # Idempotency-Key cannot pay twice.
    if response is None:
        return True
    if response.status_code >= 500:
        return True
    if response.status_code == 409:
        try:
            return response.json()["error"]["code"] == "idempotency_key_in_progress"
        except (ValueError, KeyError, TypeError):
            return False
    return False


class AgentWallex(_Base):
    """The platform API, synchronous: `AgentWallex(api_key=..., base_url=...)`; `client.x402` pays."""

    def __init__(self, api_key: str, base_url: str = DEFAULT_BASE_URL, *, http: Optional[httpx.Client] = None) -> None:
        super().__init__(api_key, base_url)
        self._http = http or httpx.Client(timeout=60.0)
        from ._x402 import X402

        self.x402 = X402(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "AgentWallex":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, call: Call) -> Any:
        """Sends one call; a call with an Idempotency-Key is repeated with it after a transport failure or a 5xx."""
        method, path, body, key = call
        attempts = RETRIES if key is not None else 1
        for attempt in range(attempts):
            response: Optional[httpx.Response] = None
            try:
                response = self._http.request(method, self.base_url + path, json=body, headers=self._headers(key))
            except httpx.TransportError:
                if attempt + 1 == attempts:
                    raise
            if attempt + 1 < attempts and _retryable(response):
                continue
            assert response is not None
            return _answer(response)
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        return self.request(("GET", path, None, None))


class AsyncAgentWallex(_Base):
    """The platform API, asynchronous: `AsyncAgentWallex(api_key=..., base_url=...)`; `client.x402` pays."""

    def __init__(
        self, api_key: str, base_url: str = DEFAULT_BASE_URL, *, http: Optional[httpx.AsyncClient] = None
    ) -> None:
        super().__init__(api_key, base_url)
        self._http = http or httpx.AsyncClient(timeout=60.0)
        from ._x402 import AsyncX402

        self.x402 = AsyncX402(self)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncAgentWallex":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def request(self, call: Call) -> Any:
        """Sends one call; a call with an Idempotency-Key is repeated with it after a transport failure or a 5xx."""
        method, path, body, key = call
        attempts = RETRIES if key is not None else 1
        for attempt in range(attempts):
            response: Optional[httpx.Response] = None
            try:
                response = await self._http.request(method, self.base_url + path, json=body, headers=self._headers(key))
            except httpx.TransportError:
                if attempt + 1 == attempts:
                    raise
            if attempt + 1 < attempts and _retryable(response):
                continue
            assert response is not None
            return _answer(response)
        raise AssertionError("unreachable")

    async def get(self, path: str) -> Any:
        return await self.request(("GET", path, None, None))
