"""Schema fuzzing of the whole public API with schemathesis, as each role, against the real system.

Every operation of the gateway's /openapi.json gets generated requests, schema-valid and schema-invalid, and every
answer goes through schemathesis' checks (not_a_server_error, status_code_conformance, content_type_conformance,
response_headers_conformance, response_schema_conformance, negative_data_rejection, ignored_auth, …) and
`problem_details` below. The run is reproducible (derandomized, no example database) and bounded (MAX_EXAMPLES
per operation and mode).

schemathesis' pytest plugin (`schemathesis.pytest.from_fixture`) fails under pytest 9.2 (it sets `Item._nodeid`,
which is gone), so each operation is driven here through its strategy API, `operation.as_strategy(...)`, under
Hypothesis' `@given`.
"""

import re
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httpx
import jwt
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition, HypothesisException, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.system import Account, Api, Session, me, new_task, unique_ip
from tests.vault_support import create, new_client

ROLES = ("admin", "manager", "read_only")
# Per operation and mode (positive, negative): about 1,700 requests and 20-30 s per role on 2 cores.
MAX_EXAMPLES = 60
SIGN_OUT = "/auth/sign-out"
PROBLEM = "application/problem+json"
FIELD = re.compile(r"[a-z][A-Za-z]*")
CHECKS = {
    # A schema-valid request may rightly be refused with 422: the schema cannot say that a task's assignee must be
    # an existing user or that a name must not be blank; the services say so, naming the field.
    "positive_data_acceptance": {"enabled": False},
}


@dataclass
class Target:
    """One role's run: its session and client IP, real ids for the paths, and what was sent and answered."""

    role: str
    url: str
    ip: str
    token: str = field(repr=False)
    user_id: str
    spare: Account = field(repr=False)  # signs in afresh for each sign-out, which revokes its session
    seeds: list[dict[str, str]]
    archivable: list[dict[str, str]]  # clients of their own for the archive route, so the seeds stay writable
    http: requests.Session = field(default_factory=requests.Session, repr=False)
    sent: int = 0
    server_errors: int = 0

    def count(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self.sent += 1
        self.server_errors += response.status_code >= 500


@pytest.fixture(scope="module", params=ROLES)
async def target(
    request: pytest.FixtureRequest, api: Api, admin: Session, fuzz_summary: list[str]
) -> AsyncIterator[Target]:
    role: str = request.param
    # Its own client IP: the random sign-ins fail and get throttled per IP, which must not reach other tests.
    ip = unique_ip()
    session = await api.sign_in(await api.new_account(role), ip=ip)
    seeds: list[dict[str, str]] = []
    for _ in range(2):  # two of each, as an admin's deletes and archive will use some of them up
        client_id = await new_client(api, admin)
        task = await new_task(api, admin, client_id, title="seed")
        credential_id = await create(api, admin, client_id, label="seed", secret="s3cret")
        changed = await api.raw.patch(
            f"/clients/{client_id}/credentials/{credential_id}", headers=admin.headers, json={"secret": "s3cret-2"}
        )
        assert changed.status_code == 200, changed.text  # its first secret is version 1, for a version route
        seeds += [
            {"clientId": client_id},
            {"clientId": client_id, "taskId": task["id"]},
            {"clientId": client_id, "credentialId": credential_id},
        ]
    archivable = [{"clientId": await new_client(api, admin)}]
    user_id = await me(api, session)
    # Users and sessions to act on that are not the fuzzing session's own (a reset or role change of its user, or
    # the end of its session, would revoke the token the rest of the run is sent with).
    for _ in range(2):
        other_user = await me(api, await api.session())
        # a member to add or remove (PUT/DELETE /clients/{clientId}/members/{userId}) needs both ids real
        seeds += [{"userId": other_user}, {"clientId": client_id, "userId": other_user}]
        second = await api.sign_in(session.account, ip=ip)  # another session of the fuzzing user
        seeds.append({"sessionId": str(jwt.decode(second.access_token, options={"verify_signature": False})["sid"])})
    # A pending access request to decide and a grant to end (/access-requests/{requestId}/…, /grants/{grantId}), two
    # of each: a manager's, not the fuzzing user's, so that an admin's approval is not of their own request.
    requester = await api.session("manager")
    for approve in (False, False, True, True):
        asked = await api.raw.post(
            f"/clients/{await new_client(api, admin)}/access-requests",
            headers=requester.headers,
            json={"reason": "seed", "minutes": 30},
        )
        assert asked.status_code == 201, asked.text
        if approve:
            approved = await api.raw.post(f"/access-requests/{asked.json()['id']}/approve", headers=admin.headers)
            assert approved.status_code == 200, approved.text
        seeds.append({"grantId" if approve else "requestId": asked.json()["id"]})
    spare = await api.new_account(role)
    found = Target(role, api.system.url, ip, session.access_token, user_id, spare, seeds, archivable)
    found.http.hooks["response"].append(found.count)
    started = time.monotonic()
    yield found
    took = time.monotonic() - started
    fuzz_summary.append(f"fuzz {role}: {found.sent} requests, {found.server_errors} 5xx in {took:.1f} s")
    found.http.close()


def fuzz_schema(target: Target) -> OpenApiSchema:
    config = schemathesis.Config.from_dict(
        {"headers": {"Authorization": f"Bearer {target.token}", "X-Forwarded-For": target.ip}, "checks": CHECKS}
    )
    schema = schemathesis.openapi.from_url(f"{target.url}/openapi.json", config=config)

    @schema.hook
    def flatmap_path_parameters(context: schemathesis.HookContext, path: dict[str, Any] | None) -> Any:
        """Real ids for two requests in three, so that they get past the 404 to the code behind: all the ids real,
        or (under a client) a real client with a generated task or credential id."""
        if not path:
            return st.just(path)
        assert context.operation is not None
        seeds = target.archivable if context.operation.path.endswith("/archive") else target.seeds
        # An old version's number is not an id: it stays as generated (so an invalid one stays invalid).
        ids = path.keys() - {"version"}
        real = [{**path, **{name: seed[name] for name in ids}} for seed in seeds if ids <= seed.keys()]
        choices = [st.sampled_from(real), st.just(path)]
        if len(path) > 1:
            choices.append(
                st.sampled_from([{**path, "clientId": seed["clientId"]} for seed in seeds if "clientId" in seed])
            )
        return st.one_of(choices)

    @schema.hook
    def flatmap_body(_context: schemathesis.HookContext, body: Any) -> Any:
        """A task's assignee is now and then a real user: a generated UUID never is one (422).
        Only a UUID is replaced, so a body made invalid on purpose stays invalid."""
        if isinstance(body, dict) and _is_uuid(body.get("assigneeUserId")):
            return st.sampled_from([{**body, "assigneeUserId": target.user_id}, body])
        return st.just(body)

    return schema


def problem_details(_ctx: schemathesis.CheckContext, response: schemathesis.Response, _case: Any) -> None:
    """Every error is RFC 9457 problem+json with the documented fields; a 422 names the fields."""
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", [""])[0] == PROBLEM, response.headers.get("content-type")
    body = response.json()
    assert body["status"] == response.status_code, body
    assert body["title"] == HTTPStatus(response.status_code).phrase or response.status_code == 413, body
    assert isinstance(body["type"], str), body
    assert isinstance(body["detail"], str), body
    assert body["detail"], body
    if response.status_code == 422:
        assert body["errors"], body
        for error in body["errors"]:
            assert set(error) == {"field", "message"}, body
            # A field by its wire name (an unknown one as the caller spelled it), not pydantic's inner location.
            assert error["message"] == "unknown field" or FIELD.fullmatch(error["field"]), body


def test_every_operation_answers_as_documented(target: Target) -> None:
    failures: list[str] = []
    fuzzed: list[str] = []
    for result in fuzz_schema(target).get_all_operations():
        if isinstance(result, Err):
            failures.append(f"the document describes an operation wrongly: {result.err()}")
            continue
        operation = result.ok()
        fuzzed.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,  # the same requests on every run and machine
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure report has its curl line
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case[Any]) -> None:
                # The token is given here as well as in the config: schemathesis takes the config's Authorization for
                # a generated one (and ignored_auth then fails a 2xx) on an operation with header parameters of its
                # own (If-Match, Idempotency-Key); given here, it is explicit and ignored_auth probes without it.
                token = sign_in(target) if case.operation.path == SIGN_OUT else target.token
                headers = {"Authorization": f"Bearer {token}"}
                case.call_and_validate(session=target.http, headers=headers, additional_checks=[problem_details])

            try:
                run()
            except Unsatisfiable:
                pass  # nothing of this operation can be made invalid (no body, no typed parameter)
            except FlakyStrategyDefinition as error:
                # Hypothesis replayed the generator and it drew otherwise (schemathesis' negative mode, now and then):
                # a fault of the generator, not an answer of the API; the requests it did send were checked.
                warnings.warn(f"{operation.label} ({mode.value}): {error}", stacklevel=1)
            except (AssertionError, FailureGroup, HypothesisException) as error:
                failures.append(f"{operation.label} ({mode.value}): {error}")
    assert not failures, "\n\n".join(failures)
    # A document without operations (or a run that sent nothing) must not pass as "no failures".
    assert fuzzed, "the document has no operations: nothing was fuzzed"
    assert target.sent >= len(fuzzed), f"{target.sent} requests for {len(fuzzed)} operations"
    assert target.server_errors == 0


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def sign_in(target: Target) -> str:
    """A session of the spare account, from an IP of its own (the fuzz's IP is throttled by its random sign-ins)."""
    r = httpx.post(
        f"{target.url}/auth/sign-in",
        json={"email": target.spare.email, "password": target.spare.password},
        headers={"X-Forwarded-For": unique_ip()},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["accessToken"])
