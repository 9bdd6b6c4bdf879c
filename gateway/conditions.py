"""Safe concurrent edits on the wire: `ETag` out, `If-Match` and `Idempotency-Key` in. Only the headers are
read here; the owning service checks the revision and keeps the keys (clientvault/idempotency.py).

An ETag is the object's revision in quotes (`"3"`), strong: every change of what GET shows moves it on, except
a credential's `lastAccessedAt` (a reveal is not an edit). `If-Match` takes a list of ETags or `*`; a tag that is
not one of ours (a weak one, `W/"3"`, never matches under RFC 9110's strong comparison) can match nothing, so
an If-Match of nothing else answers 412.
"""

import re
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Header, Response

from clientvault import idempotency

TAG = re.compile(r'"([1-9][0-9]{0,17})"')
NEVER = 0  # a revision no object has: what an If-Match of no tag of ours asks for
IF_MATCH_MAX = 1024

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=IF_MATCH_MAX,
        description='The ETag you last read (e.g. `"3"`): the change is made only if the object still has it, '
        "otherwise 412 and nothing changes. Without it, the change is made whatever happened meanwhile.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=idempotency.KEY_MAX,
        pattern=idempotency.KEY_PATTERN,
        description="A key of yours (e.g. a UUID) that makes a retry safe: the same key with the same request "
        "within 24 hours answers the first response again and creates nothing; with another request, 422. "
        "Keys are yours alone: another user's equal key is another key.",
    ),
]


ETAG_HEADER = {
    "description": 'The revision as a strong entity tag, e.g. `"3"`: send it as `If-Match` to edit safely.',
    "required": True,
    "schema": {"type": "string", "pattern": '^"[1-9][0-9]*"$'},
}


def with_etag(status: int) -> dict[str, Any]:
    """`openapi_extra` of a route whose `status` answer carries an ETag."""
    return {"responses": {str(status): {"headers": {"ETag": ETAG_HEADER}}}}


def etag(revision: int) -> str:
    return f'"{revision}"'


def tagged(response: Response, revision: int) -> None:
    response.headers["ETag"] = etag(revision)


def if_match(header: str | None) -> Iterable[int]:
    """The revisions an If-Match asks for: none for no header or `*` (no condition), NEVER when it names no tag
    of ours."""
    if header is None or header.strip() == "*":
        return []
    revisions = [int(found.group(1)) for part in header.split(",") if (found := TAG.fullmatch(part.strip()))]
    return revisions or [NEVER]
