"""The vault's kept answers about clients (services/vault/access.py), with the clients service's answer given by a
plain function: what a reveal learns, how long an answer is kept, and which change drops which answer."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from clientvault.errors import NotFound
from clientvault.policy import Role
from clientvault.revocation import DenyList
from clientvault.tokens import Caller
from services.vault.access import EVERYONE, Access, ClientAccess


class ClientsService:
    """Answers as GetClient does, and counts how often it was asked."""

    def __init__(self, answer: Access | None) -> None:
        self.answer = answer
        self.asked = 0

    async def see(self, client_id: UUID) -> Access | None:
        self.asked += 1
        return self.answer


def caller(role: Role = Role.MANAGER) -> Caller:
    return Caller(uuid.uuid4(), role, "tech@example.com", "Tech", uuid.uuid4(), 0, 2**31)


async def test_with_scoping_off_only_a_reveal_asks_and_its_answer_is_kept_until_the_client_changes() -> None:
    clients = ClientsService(Access(reveal_reason_required=True))
    access = ClientAccess(clients.see, scoping=False, ttl_s=3600)
    denylist = DenyList()
    denylist.on_access(access.changed)
    client_id, ana, bob = uuid.uuid4(), caller(), caller(Role.ADMIN)

    listed = await access.require(ana, client_id)
    first = await access.require(ana, client_id, reveal=True)
    second = await access.require(bob, client_id, reveal=True)  # the same answer for everyone: kept per client
    asked_before_change = clients.asked
    clients.answer = Access(reveal_reason_required=False)
    denylist.apply(f"access.{client_id}.{ana.user_id}", b'{"at": 1}')  # one user's change: not the client's
    still = await access.require(ana, client_id, reveal=True)
    denylist.apply(f"access.{client_id}", b'{"at": 1}')  # the client's reveal_reason_required changed
    after = await access.require(ana, client_id, reveal=True)

    assert listed is EVERYONE
    assert (first.reveal_reason_required, second.reveal_reason_required) == (True, True)
    assert asked_before_change == 1
    assert still.reveal_reason_required is True
    assert after.reveal_reason_required is False
    assert clients.asked == 2


async def test_an_unknown_client_with_scoping_off_is_left_to_the_reveal() -> None:
    access = ClientAccess(ClientsService(None).see, scoping=False, ttl_s=30)

    assert await access.require(caller(), uuid.uuid4(), reveal=True) is EVERYONE


async def test_a_grants_answer_is_kept_no_longer_than_the_grant() -> None:
    grant = uuid.uuid4()
    clients = ClientsService(Access(grant_id=grant, expires_at=datetime.now(UTC) + timedelta(seconds=0.3)))
    access = ClientAccess(clients.see, scoping=True, ttl_s=3600)
    tech, client_id = caller(), uuid.uuid4()

    during = await access.require(tech, client_id, reveal=True)
    again = await access.require(tech, client_id)
    clients.answer = None  # the grant ended: the clients service no longer shows the client to them
    await asyncio.sleep(0.4)

    assert (during.grant_id, again.grant_id, clients.asked) == (grant, grant, 1)
    with pytest.raises(NotFound, match="client not found"):
        await access.require(tech, client_id)  # no one acted: the kept answer ran out with the grant
    assert clients.asked == 2


async def test_with_scoping_on_a_members_answer_is_theirs_and_admins_share_one() -> None:
    clients = ClientsService(Access(reveal_reason_required=True))
    access = ClientAccess(clients.see, scoping=True, ttl_s=3600)
    client_id, ana, bob = uuid.uuid4(), caller(), caller()
    admins = [caller(Role.ADMIN), caller(Role.ADMIN)]

    for who in (ana, bob, ana):
        await access.require(who, client_id)
    listed_by_admin = await access.require(admins[0], client_id)
    revealed_by_admins = [await access.require(admin, client_id, reveal=True) for admin in admins]

    assert listed_by_admin is EVERYONE  # an admin sees every client: nothing to ask to list
    assert [a.reveal_reason_required for a in revealed_by_admins] == [True, True]
    assert clients.asked == 3  # ana, bob, and once for both admins' reveals
