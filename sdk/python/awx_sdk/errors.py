"""Errors of the SDK: the platform's error envelope as a typed exception, and the interceptor's own refusals."""

from __future__ import annotations

from typing import Any, Optional

import httpx


class AwxError(Exception):
    """The platform refused a request: the error envelope `{"error": {type, code, message, field?, rule?, request_id}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        type: Optional[str] = None,
        rule: Optional[str] = None,
        field: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.type = type
        self.rule = rule
        self.field = field
        self.request_id = request_id

    @classmethod
    def from_response(cls, response: httpx.Response) -> "AwxError":
        try:
            body: Any = response.json()
            error = body["error"]
            return cls(
                response.status_code,
                str(error["code"]),
                str(error.get("message", "")),
                type=error.get("type"),
                rule=error.get("rule"),
                field=error.get("field"),
                request_id=error.get("request_id"),
            )
        except (ValueError, KeyError, TypeError):
            return cls(response.status_code, "unexpected_response", response.text[:500])


class PaymentRefused(Exception):
    """The interceptor did not pay: the price is above the maximum, or the URL is outside the session's allowed URLs."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PaidButRefused(Exception):
    """The target answered 402 again after it was paid: an error, never a reason to pay a second time."""

    def __init__(self, ledger_id: str, response: httpx.Response) -> None:
        super().__init__(f"paid ({ledger_id}) but the target answered 402 again")
        self.ledger_id = ledger_id
        self.response = response
