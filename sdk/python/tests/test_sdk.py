"""The SDK against the real platform on anvil. services/awx/tests/sdk_python.rs starts it, makes the
agents and the paid API, sets the AWX_SDK_* variables, runs these tests, and then checks the
balances and payments on its side."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from awx_sdk import AgentWallex, AsyncAgentWallex, AwxError, PaidButRefused, PaymentRefused, payment_info

ENV = os.environ
SDK = Path(__file__).resolve().parents[1]


def client() -> AgentWallex:
    return AgentWallex(api_key=ENV["AWX_SDK_AGENT_KEY"], base_url=ENV["AWX_SDK_BASE_URL"])


def test_the_generated_types_match_the_openapi_document() -> None:
    done = subprocess.run([sys.executable, str(SDK / "tools" / "gen_types.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_interceptor_pays_the_paid_route_and_returns_the_content_and_the_payment() -> None:
    aw = client()
    with aw.x402.http_client(agent_id=ENV["AWX_SDK_AGENT"], chain=ENV["AWX_SDK_CHAIN"], max_amount="0.05") as http:
        response = http.get(ENV["AWX_SDK_PAID_URL"])
    assert response.status_code == 200, response.text
    assert response.json()["served_by"] == "awx-x402-axum"
    info = payment_info(response)
    assert info is not None
    assert info["ledger_id"].startswith("ldg_")
    assert Decimal(info["amount"]) == Decimal(ENV["AWX_SDK_PRICE"])
    settled = info["payment_response"]
    assert settled is not None and settled["success"] is True
    assert settled["extensions"]["awx"]["paymentId"] == info["ledger_id"]
    payment = aw.x402.get_payment(info["ledger_id"])
    assert payment["state"] == "captured"


def test_the_async_interceptor_pays_too() -> None:
    async def run() -> None:
        async with AsyncAgentWallex(api_key=ENV["AWX_SDK_AGENT_KEY"], base_url=ENV["AWX_SDK_BASE_URL"]) as aw:
            async with aw.x402.http_client(agent_id=ENV["AWX_SDK_AGENT"]) as http:
                response = await http.get(ENV["AWX_SDK_PAID_URL"])
            assert response.status_code == 200, response.text
            info = payment_info(response)
            assert info is not None
            assert (await aw.x402.get_payment(info["ledger_id"]))["state"] == "captured"
            tiers = await aw.x402.fee_tiers()
            assert tiers["tiers"], tiers

    anyio.run(run)


def test_a_url_that_is_not_x402_passes_through_untouched() -> None:
    with client().x402.http_client(agent_id=ENV["AWX_SDK_AGENT"]) as http:
        response = http.get(ENV["AWX_SDK_PLAIN_URL"])
        missing = http.get(ENV["AWX_SDK_PLAIN_URL"] + "-not-there")
    assert response.status_code == 200
    assert payment_info(response) is None
    assert missing.status_code == 404
    assert payment_info(missing) is None


def test_a_price_above_the_maximum_is_not_paid() -> None:
    with client().x402.http_client(agent_id=ENV["AWX_SDK_AGENT"], max_amount="0.009") as http:
        with pytest.raises(PaymentRefused) as refused:
            http.get(ENV["AWX_SDK_PAID_URL"])
    assert refused.value.reason == "above_maximum"
    with pytest.raises(TypeError):
        client().x402.http_client(agent_id=ENV["AWX_SDK_AGENT"], max_amount=0.05)  # type: ignore[arg-type]


def test_a_policy_refusal_is_a_typed_error_with_its_rule() -> None:
    with client().x402.http_client(agent_id=ENV["AWX_SDK_LIMITED_AGENT"]) as http:
        with pytest.raises(AwxError) as refused:
            http.get(ENV["AWX_SDK_PAID_URL"])
    assert refused.value.status == 403
    assert refused.value.code == "policy_denied"
    assert refused.value.rule == "policy.per_payment_max"
    assert refused.value.request_id and refused.value.request_id.startswith("req_")


def test_a_sessions_budget_is_spent_exactly_and_its_urls_are_kept() -> None:
    aw = client()
    price = Decimal(ENV["AWX_SDK_PRICE"])
    session = aw.x402.create_session(
        agent_id=ENV["AWX_SDK_SESSION_AGENT"],
        budget_limit=str(price * 3),
        ttl_seconds=600,
        allowed_urls=[ENV["AWX_SDK_PAID_URL"]],
    )
    # Outside the session's URLs: refused by the platform, nothing paid.
    with aw.x402.http_client(agent_id=ENV["AWX_SDK_SESSION_AGENT"], session_id=session["id"]) as http:
        with pytest.raises(AwxError) as outside:
            http.get(ENV["AWX_SDK_OTHER_PAID_URL"])
        assert outside.value.rule == "session.allowed_urls"
        for _ in range(3):
            assert http.get(ENV["AWX_SDK_PAID_URL"]).status_code == 200
        with pytest.raises(AwxError) as spent:
            http.get(ENV["AWX_SDK_PAID_URL"])
    assert spent.value.status == 403
    assert spent.value.rule == "session.budget_limit"
    after = aw.x402.get_session(session["id"])
    assert Decimal(after["spent"]) == price * 3
    assert Decimal(after["remaining"]) == 0


def test_a_second_402_after_paying_is_an_error_not_a_second_payment() -> None:
    with client().x402.http_client(agent_id=ENV["AWX_SDK_REFUSING_AGENT"]) as http:
        with pytest.raises(PaidButRefused) as refused:
            http.get(ENV["AWX_SDK_REFUSING_URL"])
    assert refused.value.ledger_id.startswith("ldg_")


def test_the_idempotency_key_of_a_pay_is_derived_from_the_request() -> None:
    from awx_sdk._x402 import _idempotency_key
    import httpx

    keyed = httpx.Request("GET", "http://example.test/paid", headers={"Idempotency-Key": "order-7"})
    again = httpx.Request("GET", "http://example.test/paid", headers={"Idempotency-Key": "order-7"})
    other = httpx.Request("GET", "http://example.test/paid", headers={"Idempotency-Key": "order-8"})
    assert _idempotency_key(keyed) == _idempotency_key(again)
    assert _idempotency_key(keyed) != _idempotency_key(other)
    plain = httpx.Request("GET", "http://example.test/paid")
    assert _idempotency_key(plain) != _idempotency_key(plain)
