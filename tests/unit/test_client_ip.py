"""The client IP is the TCP peer unless that peer is a trusted proxy (CLIENTVAULT_TRUSTED_PROXIES)."""

import pytest
from starlette.requests import Request

from clientvault.settings import GatewaySettings
from gateway.calls import client_ip


def request(peer: str, forwarded: str | None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 5000), "headers": headers})


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        ("", "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # nobody trusted: a forged header is ignored
        ("10.0.0.0/8", "10.0.0.5", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.0/8", "10.0.0.5", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the left part is the client's word
        ("10.0.0.0/8", "10.0.0.5", "198.51.100.1, 10.0.0.7", "198.51.100.1"),  # two proxies of ours
        ("10.0.0.0/8", "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted peer
        ("10.0.0.0/8", "10.0.0.5", None, "10.0.0.5"),
        ("10.0.0.0/8", "10.0.0.5", "6.6.6.6, not-an-address", "10.0.0.5"),  # no address: the proxy is the client
    ],
)
def test_client_ip(trusted: str, peer: str, forwarded: str | None, expected: str) -> None:
    settings = GatewaySettings(trusted_proxies=trusted)

    assert client_ip(request(peer, forwarded), settings) == expected
