"""awx's Python SDK: agents pay x402 APIs through the platform.

    from awx_sdk import AgentWallex, payment_info

    aw = AgentWallex(api_key="awx_...", base_url="http://127.0.0.1:8080")
    http = aw.x402.http_client(agent_id="agt_...", max_amount="0.05")
    response = http.get("http://127.0.0.1:8090/v1/weather")
"""

from ._client import AgentWallex, AsyncAgentWallex
from ._x402 import AsyncPayingTransport, AsyncX402, PayingTransport, X402, payment_info
from .errors import AwxError, PaidButRefused, PaymentRefused

__all__ = [
    "AgentWallex",
    "AsyncAgentWallex",
    "AsyncPayingTransport",
    "AsyncX402",
    "AwxError",
    "PaidButRefused",
    "PayingTransport",
    "PaymentRefused",
    "X402",
    "payment_info",
]
