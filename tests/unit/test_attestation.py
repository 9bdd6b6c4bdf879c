"""The gateway's context attestation (clientvault/attestation.py), as a forger would try it: another key,
another service's key, another method, another caller, edited context, an old or future time."""

import base64
import os

import pytest
from pydantic import SecretStr

from clientvault.attestation import (
    HEADER,
    WINDOW_S,
    Attester,
    ContextCheck,
    derive_key,
    key_from,
    peer_address,
    service_key_setting,
)
from clientvault.context import RequestContext

MASTER = os.urandom(32)
NOW = 1_800_000_000.0
REVEAL = "/clientvault.v1.Vault/RevealCredential"
PEER = "ipv4:192.0.2.7:40123"
SENT = {
    "x-request-id": "req-1",
    "x-client-ip": "203.0.113.9",
    "x-user-agent": "curl/8",
    "authorization": "Bearer token-of-alice",
}


def attested(
    metadata: dict[str, str], service: str = "vault", method: str = REVEAL, now: float = NOW
) -> dict[str, str]:
    """The metadata as the gateway sends it to `service`."""
    attester = Attester(service, derive_key(MASTER, service))
    return {**metadata, HEADER: attester.attest(method, metadata, now)}


def vault_check() -> ContextCheck:
    return ContextCheck("vault", derive_key(MASTER, "vault"))


def test_the_gateways_attestation_is_believed() -> None:
    context, refused = vault_check().context_of(REVEAL, attested(SENT), PEER, NOW + 5)

    assert refused is None
    assert context == RequestContext("req-1", "203.0.113.9", "curl/8", attested=True)


def test_without_an_attestation_the_peer_address_is_the_client_and_nothing_else_is_believed() -> None:
    context, refused = vault_check().context_of(REVEAL, SENT, PEER, NOW)

    assert refused == "no attestation"
    assert context == RequestContext("", "192.0.2.7", "", attested=False)


@pytest.mark.parametrize(
    ("forged", "reason"),
    [
        pytest.param({"x-client-ip": "198.51.100.66"}, "attestation does not match", id="another client ip"),
        pytest.param({"x-user-agent": "Mozilla/5.0"}, "attestation does not match", id="another user agent"),
        pytest.param({"x-request-id": "req-2"}, "attestation does not match", id="another request id"),
        pytest.param({"authorization": "Bearer token-of-mallory"}, "attestation does not match", id="another caller"),
    ],
)
def test_editing_what_was_attested_is_refused(forged: dict[str, str], reason: str) -> None:
    context, refused = vault_check().context_of(REVEAL, {**attested(SENT), **forged}, PEER, NOW)

    assert refused == reason
    assert (context.client_ip, context.attested) == ("192.0.2.7", False)


def test_an_attestation_made_with_another_key_is_refused() -> None:
    forger = Attester("vault", os.urandom(32))
    metadata = {**SENT, HEADER: forger.attest(REVEAL, SENT, NOW)}

    assert vault_check().refusal(REVEAL, metadata, NOW) == "attestation does not match"


def test_another_services_key_cannot_vouch_for_a_call_to_the_vault() -> None:
    """A process holding audit's key (its own) attests a call to the vault: refused."""
    with_audits_key = {**SENT, HEADER: Attester("vault", derive_key(MASTER, "audit")).attest(REVEAL, SENT, NOW)}

    assert vault_check().refusal(REVEAL, with_audits_key, NOW) == "attestation does not match"
    assert derive_key(MASTER, "vault") != derive_key(MASTER, "audit")


def test_an_attestation_replayed_to_another_method_or_service_is_refused() -> None:
    for_listing = attested(SENT, method="/clientvault.v1.Vault/ListCredentials")
    for_auth = attested(SENT, service="auth", method="/clientvault.v1.Auth/SignIn")

    assert vault_check().refusal(REVEAL, for_listing, NOW) == "attestation does not match"
    auth_check = ContextCheck("auth", derive_key(MASTER, "auth"))
    assert auth_check.refusal("/clientvault.v1.Auth/SignIn", attested(SENT), NOW) == "attestation does not match"
    assert auth_check.refusal("/clientvault.v1.Auth/SignIn", for_auth, NOW) is None


@pytest.mark.parametrize("skew", [WINDOW_S + 1, -(WINDOW_S + 1), 3600])
def test_an_old_or_future_attestation_is_refused(skew: float) -> None:
    assert vault_check().refusal(REVEAL, attested(SENT), NOW + skew) == "stale attestation"


@pytest.mark.parametrize("skew", [WINDOW_S, -WINDOW_S])
def test_within_the_window_either_way_an_attestation_is_believed(skew: float) -> None:
    assert vault_check().refusal(REVEAL, attested(SENT), NOW + skew) is None


def test_a_time_moved_forward_by_the_caller_breaks_the_mac() -> None:
    metadata = attested(SENT, now=NOW - 3600)
    version, _, mac = metadata[HEADER].split(".")
    metadata[HEADER] = f"{version}.{int(NOW)}.{mac}"

    assert vault_check().refusal(REVEAL, metadata, NOW) == "attestation does not match"


@pytest.mark.parametrize("value", ["", "v1", "v1.x.y", "v2.1800000000.abc", "v1.-5.abc", "v1.1800000000."])
def test_a_malformed_attestation_is_refused(value: str) -> None:
    assert vault_check().refusal(REVEAL, {**SENT, HEADER: value}, NOW) in {
        "malformed attestation",
        "attestation does not match",
    }


def test_a_service_without_a_key_believes_no_one() -> None:
    assert ContextCheck("vault", None).refusal(REVEAL, attested(SENT), NOW) == "no key configured"


def test_the_operators_derived_setting_is_the_services_key() -> None:
    setting = service_key_setting(MASTER, "vault")

    assert key_from(SecretStr(setting), "CLIENTVAULT_CONTEXT_VERIFY_KEY") == derive_key(MASTER, "vault")
    assert key_from(SecretStr(""), "X") is None
    assert key_from(None, "X") is None


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_key_stops_the_process_naming_the_setting_not_the_value(value: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        key_from(SecretStr(value), "CLIENTVAULT_CONTEXT_VERIFY_KEY")

    assert str(stopped.value) == "CLIENTVAULT_CONTEXT_VERIFY_KEY must be the base64 of 32 bytes"


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:5555", "127.0.0.1"),
        ("ipv6:[::1]:5555", "::1"),
        ("ipv6:%5B2001:db8::7%5D:443", "2001:db8::7"),
        ("unix:/run/clientvault.sock", "unix:/run/clientvault.sock"),
    ],
)
def test_the_peer_address(peer: str, address: str) -> None:
    assert peer_address(peer) == address
