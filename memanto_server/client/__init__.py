"""Python client of the Memanto server: sync and async, sessions kept alive by themselves.

    from memanto_server.client import MemantoClient

    with MemantoClient("http://127.0.0.1:8000", api_key="mk_…") as client:
        agent = client.agent("customer-support")          # activates on first use
        agent.remember("Customer prefers email", type="preference")
        print(agent.answer("How should we contact the customer?").answer)

Results are the server's own msgspec Structs (`memanto_server.*.schemas`); errors are the typed
exceptions of `memanto_server.client.errors`, carrying the server's problem details.
"""

from memanto_server.client._async import AsyncAgentHandle, AsyncMemantoClient
from memanto_server.client._sync import AgentHandle, MemantoClient
from memanto_server.client.errors import (
    AuthenticationError,
    ConflictError,
    ConnectionFailedError,
    MemantoError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceUnavailableError,
    ValidationError,
)

__all__ = [
    "AgentHandle",
    "AsyncAgentHandle",
    "AsyncMemantoClient",
    "AuthenticationError",
    "ConflictError",
    "ConnectionFailedError",
    "MemantoClient",
    "MemantoError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "ValidationError",
]
