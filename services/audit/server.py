"""The audit service process. Until its issue lands it serves only the standard health check (and
reflection when enabled), so that `clientvault up` and deployments can start, watch and stop it.
"""

from clientvault import rpc
from clientvault.settings import Settings
from clientvault.verification import verifier_for


async def main(settings: Settings) -> None:
    auth_channel = rpc.channel(settings.auth_addr)
    verifier, denylist = verifier_for(settings, auth_channel)
    try:
        await rpc.serve(
            settings,
            address=settings.audit_addr,
            verifier=verifier,
            register=lambda server: None,
            service_names=[],
            background=[denylist.run(settings.require_nats_url())],
        )
    finally:
        await auth_channel.close()
