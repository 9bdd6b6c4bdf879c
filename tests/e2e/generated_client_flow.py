"""A short flow through the client that openapi-python-client generates from the live /openapi.json, as a
user of the API would write it (tests/e2e/test_generated_client.py).

The test type-checks this file with `mypy --strict --disallow-any-expr` against the generated package (so
no expression here, a response field included, may be `Any`), then runs it against the system. It is not
checked with the repository (`make lint`): `clientvault_api_client` exists only in the test's temp dir.

Run: CLIENTVAULT_URL, CLIENTVAULT_EMAIL, CLIENTVAULT_PASSWORD (an admin) and CLIENTVAULT_IP (sent as
X-Forwarded-For) in the environment; prints one line of what it did.
"""

import os
import time
import uuid
from datetime import datetime

from clientvault_api_client import AuthenticatedClient, Client
from clientvault_api_client.api.audit import list_audit_logs
from clientvault_api_client.api.auth import sign_in
from clientvault_api_client.api.clients import create_client
from clientvault_api_client.api.credentials import create_credential, reveal_credential
from clientvault_api_client.models import (
    AuditAction,
    AuditCredentialOut,
    AuditEntryOut,
    AuditEntryPage,
    ClientIn,
    ClientOut,
    ClientStatus,
    CreatedOut,
    CredentialIn,
    RevealedOut,
    SignInIn,
    TokenPairOut,
)

AUDIT_WAIT_S = 20  # the audit log is written asynchronously (vault outbox -> NATS -> audit)


def audited(api: AuthenticatedClient, credential_id: str, count: int) -> list[AuditEntryOut]:
    """The credential's audit entries, newest first, once there are `count` of them."""
    deadline = time.monotonic() + AUDIT_WAIT_S
    while True:
        page = list_audit_logs.sync(client=api, credential_id=uuid.UUID(credential_id))
        assert isinstance(page, AuditEntryPage), page
        if page.total >= count or time.monotonic() > deadline:
            return page.items
        time.sleep(0.2)


def main() -> None:
    url, ip = os.environ["CLIENTVAULT_URL"], os.environ["CLIENTVAULT_IP"]
    email, password = os.environ["CLIENTVAULT_EMAIL"], os.environ["CLIENTVAULT_PASSWORD"]
    headers = {"X-Forwarded-For": ip}

    with Client(base_url=url, headers=headers) as public:
        pair = sign_in.sync(client=public, body=SignInIn(email=email, password=password))
    assert isinstance(pair, TokenPairOut), pair
    expires_in: int = pair.expires_in
    assert (pair.token_type, expires_in > 0) == ("Bearer", True)

    with AuthenticatedClient(base_url=url, token=pair.access_token, headers=headers) as api:
        client = create_client.sync(client=api, body=ClientIn(name="Generated Co", company="Typed Ltd"))
        assert isinstance(client, ClientOut), client
        created_at: datetime = client.created_at
        archived_at: datetime | None = client.archived_at
        assert (client.status, archived_at, created_at.tzinfo is not None) == (ClientStatus.ACTIVE, None, True)

        body = CredentialIn(label="Router", secret="generated-s3cret", username="admin")
        created = create_credential.sync(client.id, client=api, body=body)
        assert isinstance(created, CreatedOut), created

        revealed = reveal_credential.sync(client.id, created.id, client=api)
        assert isinstance(revealed, RevealedOut), revealed
        secret: str = revealed.secret
        username: str | None = revealed.username
        assert (secret, username) == ("generated-s3cret", "admin")

        entries = audited(api, created.id, 2)
        actions: list[AuditAction] = [entry.action for entry in entries]
        assert actions == [AuditAction.CREDENTIAL_REVEAL, AuditAction.CREDENTIAL_CREATE], actions
        occurred_at: datetime = entries[0].occurred_at
        who: str = entries[0].user.email
        credential = entries[0].credential  # null on entries about no credential (a sign-in, a read of the log)
        assert isinstance(credential, AuditCredentialOut), credential
        assert (who, credential.client_id) == (email, client.id)

    print(f"flow: signed in, client {client.id}, credential {created.id} revealed, audited {actions} at {occurred_at}")


if __name__ == "__main__":
    main()
