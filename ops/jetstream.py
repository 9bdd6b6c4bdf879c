"""The operator's JetStream bootstrap: the `AUDIT` stream (clientvault/events.py) and the revocation bucket
(clientvault/revocation.py), created once, as the operator user, before any process starts (`clientvault up`
after nats-server is up; `clientvault migrate` when NATS_URL is set: the deployment's migration step). The
processes' NATS users may not create, change or source a stream (clientvault/nats_access.py): they only bind
to these, and say so in their log when one is missing. Existing ones are used as they are (a deployment may
have created them itself, replicated).
"""

import nats

from clientvault import events
from clientvault.revocation import ensure_bucket


async def bootstrap(operator_url: str, replicas: int = 1) -> None:
    nc = await nats.connect(operator_url, connect_timeout=5, allow_reconnect=False)
    try:
        await events.ensure_stream(nc, replicas)
        await ensure_bucket(nc, replicas)
    finally:
        await nc.close()
