"""The request behind a call, as plain data for domain code: who acts and what the edge knows of the request.

The actor is the `Caller` (clientvault/tokens.py) whose token the edge verified; `RequestContext` is what the
gateway says about the HTTP request (request id, client IP, user agent) when it vouches for the call
(clientvault/attestation.py); otherwise the client IP is the gRPC peer's address and the rest is empty. The
gRPC edge (clientvault/rpc.py) fills both; domain modules take them as arguments and import no transport.
"""

from dataclasses import dataclass

from clientvault.tokens import Caller

__all__ = ["NO_REQUEST", "Caller", "RequestContext"]


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    client_ip: str
    user_agent: str
    attested: bool = False  # False: not vouched for by the gateway (client_ip is then the gRPC peer's)


NO_REQUEST = RequestContext("", "", "")
