"""Starting a service process, written once: its database pool, the check that its schema is at the version
its code ships (clientvault/migrations.py), channels to the services it calls, the token verifier and its deny
list (fed from NATS), the gRPC server, jobs alongside it, and closing it all in reverse order however the process
ends. Each service's `main()` says only what differs:

    async def main(settings: Settings) -> None:
        async with Service("clients", settings, MIGRATIONS) as service:
            auth = auth_pb2_grpc.AuthStub(service.channel("auth"))
            servicer = ClientsServicer(service.db, auth, settings.rpc_timeout_s)
            await service.serve(add_ClientsServicer_to_server, servicer, CLIENTS)
"""

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from clientvault import rpc
from clientvault.attestation import ContextCheck, key_from
from clientvault.db import Database
from clientvault.logging import get_logger
from clientvault.migrations import SchemaVersion
from clientvault.revocation import DenyList
from clientvault.settings import Settings
from clientvault.tokens import KeyFetcher, TokenVerifier
from clientvault.verification import verifier_for, verifier_with

log = get_logger(__name__)


class Service:
    def __init__(self, name: str, settings: Settings, migrations: Path) -> None:
        """`migrations`: the service's Alembic tree, whose head its schema must be at before it serves."""
        self.name = name
        self.settings = settings
        self.schema = SchemaVersion.shipped(name, migrations)
        self._closing = contextlib.AsyncExitStack()
        self.db = Database.for_service(settings, name)
        self._closing.push_async_callback(self.db.dispose)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._verifier: tuple[TokenVerifier, DenyList] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._closing.aclose()

    def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to another service (at its `<service>_addr`): opened once for the process."""
        if service not in self._channels:
            opened = rpc.channel(getattr(self.settings, f"{service}_addr"))
            self._closing.push_async_callback(opened.close)
            self._channels[service] = opened
        return self._channels[service]

    def _verification(self) -> tuple[TokenVerifier, DenyList]:
        if self._verifier is None:
            self._verifier = verifier_for(self.settings, self.channel("auth"))
        return self._verifier

    def deny_list(self) -> DenyList:
        """The process's deny list (made with its verifier on first use), e.g. to listen to access changes."""
        return self._verification()[1]

    def verify_with(self, fetch_keys: KeyFetcher) -> None:
        """Verify tokens with these keys (the auth service's own) rather than asking the auth service."""
        self._verifier = verifier_with(self.settings, fetch_keys)

    def on_close(self, close: Callable[[], Awaitable[object] | object]) -> None:
        """Call `close` (plain or async) when the process ends, before what was opened earlier is closed."""

        async def closing() -> None:
            result = close()
            if inspect.isawaitable(result):
                await result

        self._closing.push_async_callback(closing)

    async def serve(
        self,
        add: Callable[[Any, grpc.aio.Server], None],
        servicer: object,
        service: ServiceDescriptor,
        *alongside: Awaitable[None],
        on_forbidden: Mapping[str, rpc.OnForbidden] | None = None,
    ) -> None:
        """Serves `servicer` (registered by its generated `add_…_to_server`) at the service's own address until
        SIGTERM/SIGINT, with the deny list following NATS and the `alongside` jobs running meanwhile.
        `on_forbidden`: what to do, besides refusing, when the policy refuses an operation (clientvault/rpc.py)."""
        verifier, denylist = self._verification()
        context_key = key_from(self.settings.context_verify_key, "CLIENTVAULT_CONTEXT_VERIFY_KEY")
        if context_key is None:
            log.warning(
                "context.unattested",
                detail="CLIENTVAULT_CONTEXT_VERIFY_KEY is not set: no call's client IP, user agent or request id "
                "is believed; audit events and limits use the caller's network address",
            )
        await rpc.serve(
            self.settings,
            address=getattr(self.settings, f"{self.name}_addr"),
            verifier=verifier,
            context=ContextCheck(self.name, context_key),
            register=lambda server: add(servicer, server),
            service_names=[service.full_name],
            ready=self.schema.wait_until_current(self.db),  # a schema ahead of the code ends the process
            background=[denylist.run(self.settings.require_nats_url()), *alongside],
            on_forbidden=on_forbidden,
        )
