"""The `clientvault` command: run the system (`up`, `serve`, `migrate`) and administer it (`users`, `vault`,
`audit`).

Fit for scripts: results on stdout (`--output json` where a script reads them), progress bars (on a
terminal only), warnings and log lines on stderr, and the exit codes of `Code`.
"""

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsError

from clientvault.errors import DomainError
from ops.registry import BY_NAME

if TYPE_CHECKING:
    from rich.progress import Progress

    from clientvault.settings import VaultSettings
    from ops import audit_report

T = TypeVar("T")
S = TypeVar("S", bound=BaseSettings)


class Code(IntEnum):
    """The exit codes (README.md, "Operator commands")."""

    OK = 0
    FAILED = 1  # a verification failed, or the system refused the command (the message says why)
    USAGE = 2  # the command line or the configuration is wrong (click's own code for a bad option, too)
    UNAVAILABLE = 3  # the database or NATS cannot be reached


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


app = typer.Typer(help="ClientVault: clients, tasks and an audited credential vault.", no_args_is_help=True)
users_app = typer.Typer(help="Manage the people who sign in.", no_args_is_help=True)
app.add_typer(users_app, name="users")
vault_app = typer.Typer(help="The vault's encryption keys: status and rotation.", no_args_is_help=True)
app.add_typer(vault_app, name="vault")
audit_app = typer.Typer(help="The audit log's hash chain.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
context_app = typer.Typer(help="The keys of the gateway's request-context attestations.", no_args_is_help=True)
app.add_typer(context_app, name="context-key")

DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="CLIENTVAULT_DATA_DIR",
        help="Where `up` keeps its data; operator commands act on the system running there.",
    ),
]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="text for people; json (one document on stdout) for scripts.")
]
DEFAULT_DATA_DIR = Path(".clientvault")


def fail(message: str, code: Code = Code.FAILED) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _show_version(shown: bool) -> None:
    if shown:
        typer.echo(f"clientvault {version('clientvault')}")
        raise typer.Exit()


@app.callback()
def options(
    _version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    from clientvault import logging

    logging.configure("warning", "cli")  # what the commands' libraries log goes to stderr (`serve` sets its own)


def _settings(settings_cls: type[S]) -> S:
    """Settings read from the environment; a wrong value or a *_FILE that cannot be read is a usage error."""
    try:
        return settings_cls()
    except SettingsError as error:
        raise fail(str(error), Code.USAGE) from None
    except ValidationError as error:
        found = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False))
        raise fail(f"configuration: {found}", Code.USAGE) from None


def _progress() -> "Progress":
    """A progress bar on stderr, drawn only when stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, disable=not console.is_terminal)


def _print_json(document: object) -> None:
    typer.echo(json.dumps(document, indent=2))


@app.command()
def up(
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    port: Annotated[int, typer.Option(help="The gateway's HTTP port.")] = 8000,
    host: Annotated[str, typer.Option(help="The gateway's listen address.")] = "127.0.0.1",
    admin_email: Annotated[str, typer.Option(help="Email of the admin created on first start.")] = "admin@example.com",
) -> None:
    """Run the whole system in the foreground (embedded PostgreSQL and NATS unless DATABASE_URL/NATS_URL)."""
    from ops import supervisor

    raise typer.Exit(asyncio.run(supervisor.run(data_dir, host, port, admin_email)))


@app.command()
def serve(name: Annotated[str, typer.Argument(help="gateway, auth, clients, vault or audit")]) -> None:
    """Run one process, configured by the environment (what containers run)."""
    if name not in BY_NAME:
        raise fail(f"unknown process {name!r}: choose one of {', '.join(BY_NAME)}", Code.USAGE)
    process = BY_NAME[name]
    process.serve(_settings(process.settings))


@app.command()
def migrate(
    nats_replicas: Annotated[
        int,
        typer.Option(
            "--nats-replicas", envvar="CLIENTVAULT_NATS_REPLICAS", min=1, help="Replicas of a stream it creates."
        ),
    ] = 1,
) -> None:
    """Apply every service's schema migrations to DATABASE_URL and, when NATS_URL (the operator's) is set,
    create the AUDIT stream and the revocation bucket unless they exist (the deployment's migration job)."""
    from clientvault.settings import Settings
    from ops.migrate import upgrade_all

    config = _settings(Settings)
    target = Target(config.require_database_url(), config.nats_url)
    target.call(lambda: upgrade_all(target.database_url))
    typer.echo("migrations applied")
    if target.nats_url:
        from ops.jetstream import bootstrap

        target.run(bootstrap(target.nats_url, nats_replicas))
        typer.echo("AUDIT stream and revocation bucket in place")


@app.command("token-public-key")
def token_public_key() -> None:
    """Print the public half of a token signing key read from stdin (base64), for
    CLIENTVAULT_TOKEN_PREVIOUS_KEYS when the key is retired."""
    from services.auth import admin

    try:
        public_key = admin.public_key_of(sys.stdin.read().strip())
    except SystemExit as error:
        raise fail(str(error).replace("CLIENTVAULT_TOKEN_SIGNING_KEY", "the key on stdin")) from None
    typer.echo(public_key)


@context_app.command("derive")
def context_key_derive(
    service: Annotated[str, typer.Option(help="auth, clients, vault or audit")],
) -> None:
    """Print a service's CLIENTVAULT_CONTEXT_VERIFY_KEY for the gateway's CLIENTVAULT_CONTEXT_KEY read from
    stdin (base64); give each service only its own."""
    from clientvault.attestation import key_from, service_key_setting
    from ops.registry import SERVICES

    if service not in {s.name for s in SERVICES}:
        raise fail(f"unknown service {service!r}: choose one of {', '.join(s.name for s in SERVICES)}", Code.USAGE)
    try:
        context_key = key_from(SecretStr(sys.stdin.read().strip()), "the key on stdin")
    except SystemExit as error:
        raise fail(str(error)) from None
    if context_key is None:
        raise fail("give the gateway's CLIENTVAULT_CONTEXT_KEY on stdin")
    typer.echo(service_key_setting(context_key, service))


@dataclass(frozen=True, slots=True)
class Target:
    """The system an operator command acts on; `run` and `call` turn what goes wrong into an exit code."""

    database_url: str
    nats_url: str | None

    def run(self, job: Coroutine[Any, Any, T]) -> T:
        return self.call(lambda: asyncio.run(job))

    def call(self, work: Callable[[], T]) -> T:
        from ops.outages import OUTAGES, describe

        try:
            return work()
        except OUTAGES as error:
            raise fail(describe(error, self.database_url, self.nats_url), Code.UNAVAILABLE) from None
        except DomainError as error:
            raise fail(str(error)) from None


def _system(data_dir: Path) -> Target:
    """The database and NATS URLs, each from the environment if set (or its *_FILE), else from the `up`
    running on the data dir (they are independent, as for `up` itself)."""
    from clientvault.settings import Settings
    from ops.datadir import DataDir

    given = _settings(Settings)
    database_url, nats_url = given.database_url, given.nats_url
    running = DataDir.at(data_dir).read_system() if (data_dir / "run").exists() else None
    if running is not None:
        database_url, nats_url = database_url or running["database_url"], nats_url or running["nats_url"]
    if not database_url:
        message = f"nothing runs on {data_dir.resolve()}: start `clientvault up` there, or set DATABASE_URL"
        raise fail(message, Code.UNAVAILABLE)
    return Target(database_url, nats_url)


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="Sign-in email (unique).")],
    full_name: Annotated[str, typer.Option(help="Name shown in the audit log.")],
    role: Annotated[str, typer.Option(help="admin, manager or read_only.")],
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Create a user who can sign in."""
    from services.auth import admin

    if password_stdin:
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    target = _system(data_dir)
    user = target.run(
        admin.create_user(target.database_url, email=email, full_name=full_name, role=role, password=password)
    )
    typer.echo(f"created {user.role.value} {user.email} (id {user.id})")


@users_app.command("list")
def users_list(data_dir: DataDirOption = DEFAULT_DATA_DIR, output: OutputOption = Output.TEXT) -> None:
    """List every user with role and state: a table on a terminal, tab-separated lines when piped."""
    from services.auth import admin

    target = _system(data_dir)
    users = target.run(admin.list_users(target.database_url))
    if output is Output.JSON:
        _print_json(
            [
                {
                    "id": str(u.id),
                    "email": u.email,
                    "full_name": u.full_name,
                    "role": u.role.value,
                    "created_at": u.created_at.isoformat(),
                    "disabled_at": u.disabled_at.isoformat() if u.disabled_at else None,
                }
                for u in users
            ]
        )
        return
    columns = ("id", "email", "full name", "role", "created", "state")
    rows = [
        (
            str(u.id),
            u.email,
            u.full_name,
            u.role.value,
            u.created_at.isoformat(),
            "disabled" if u.disabled_at else "active",
        )
        for u in users
    ]
    if not sys.stdout.isatty():  # piped: tab-separated lines, nothing truncated, easy to script
        for row in [columns, *rows]:
            typer.echo("\t".join(row))
        return
    _print_table(columns, rows)


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on the terminal, as wide as its widest cells: a narrow terminal wraps the lines, but no id or
    email is ever cut short."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    console = Console()
    natural = console.measure(table, options=console.options.update_width(sys.maxsize)).maximum
    Console(width=max(console.width, natural), height=console.height).print(table)  # both, or a dumb terminal is 80


def _set_disabled(email: str, data_dir: Path, *, disabled: bool) -> None:
    from services.auth import admin

    target = _system(data_dir)
    if target.nats_url is None:
        raise fail("NATS_URL is not set: disabling must reach every running verifier", Code.USAGE)
    change = admin.disable if disabled else admin.enable
    user, broadcast = target.run(change(target.database_url, target.nats_url, email))
    typer.echo(f"{'disabled' if disabled else 'enabled'} {user.email}")
    if not broadcast:
        typer.echo(
            "warning: NATS did not take the revocation: the user cannot sign in or refresh, but access tokens "
            "already issued keep working until they expire (at most CLIENTVAULT_ACCESS_TOKEN_TTL_S)",
            err=True,
        )
        raise typer.Exit(Code.UNAVAILABLE)


@users_app.command("disable")
def users_disable(email: Annotated[str, typer.Option()], data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Disable a user: no sign-in or refresh, and their access tokens stop working within a second."""
    _set_disabled(email, data_dir, disabled=True)


@users_app.command("enable")
def users_enable(email: Annotated[str, typer.Option()], data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Enable a disabled user again (they sign in anew)."""
    _set_disabled(email, data_dir, disabled=False)


def _vault_settings(data_dir: Path) -> "VaultSettings":
    """The vault's key settings from the environment; else the keyring that `up` keeps in the data dir."""
    from clientvault.settings import VaultSettings

    settings = _settings(VaultSettings)
    own = settings.key_provider == "transit" or settings.keks is not None or settings.kek_file
    keyring = (data_dir / "secrets.json").resolve()
    if not own and keyring.exists():
        settings = settings.model_copy(update={"kek_file": str(keyring)})
    return settings


def _vault_job(data_dir: Path, job: Callable[[str, "VaultSettings"], Coroutine[Any, Any, T]]) -> T:
    """Runs a vault admin job on the system's database with the vault's key settings; a key missing or wrong
    is reported as such."""
    from services.vault import admin

    target = _system(data_dir)
    try:
        return target.run(job(target.database_url, _vault_settings(data_dir)))
    except admin.KeyFailure as error:
        raise fail(str(error)) from None


@vault_app.command("status")
def vault_status(data_dir: DataDirOption = DEFAULT_DATA_DIR, output: OutputOption = Output.TEXT) -> None:
    """How many data keys and secrets sit on each KEK version."""
    from services.vault import admin

    found = _vault_job(data_dir, admin.status)
    if output is Output.JSON:
        _print_json(
            {
                "key_provider": found.provider,
                "active_kek": found.active,
                "versions": [
                    {"kek_version": version, "data_keys": keys, "secrets": sealed, "old_versions": old}
                    for version, keys, sealed, old in found.versions
                ],
                "secrets_on_old_keys": found.secrets_on_old_keys,
                "secrets_without_key": found.secrets_without_key,
                "unfinished_rotation": found.unfinished,
            }
        )
    else:
        typer.echo(f"key provider: {found.provider}   active KEK: {found.active}")
        typer.echo(f"{'KEK version':<12} {'data keys':>10} {'secrets':>10} {'old versions':>13}")
        for version, keys, sealed, old in found.versions:
            name = version + (" (active)" if version == found.active else "")
            typer.echo(f"{name:<12} {keys:>10} {sealed:>10} {old:>13}")
        typer.echo(f"secrets on an older data key of their client: {found.secrets_on_old_keys}")
        if found.unfinished:
            typer.echo(f"an interrupted rotation to {found.unfinished} waits: run `clientvault vault rotate-key`")
    if found.secrets_without_key:
        typer.echo(f"error: {found.secrets_without_key} secrets have no data key and cannot be decrypted", err=True)


@vault_app.command("rotate-key")
def vault_rotate_key(
    reencrypt: Annotated[
        bool, typer.Option(help="Also give every client a new data key and re-encrypt secrets.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=5000, help="Rows per committed batch.")] = 500,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Make a new KEK version active and rewrap every data key, online and resumable."""
    from rich.progress import TaskID

    from services.vault import admin

    with _progress() as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        def job(database_url: str, settings: "VaultSettings") -> Coroutine[Any, Any, str]:
            return admin.rotate(
                database_url, settings, reencrypt=reencrypt, batch=batch_size, progress=progress, say=bar.console.print
            )

        active = _vault_job(data_dir, job)
    typer.echo(
        f"rotation done: every data key is on KEK {active}" + (", every secret re-encrypted" if reencrypt else "")
    )


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    expect_head: Annotated[
        str | None,
        typer.Option(
            help="SEQ:HASH printed by an earlier verify and kept outside the database: check it is still there."
        ),
    ] = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Walk the audit chain and recompute every hash; name the first entry changed, removed or reordered.
    Also check that every event the vault sent is in the log, and that an earlier head is still in the chain.
    Exit 1 when any check fails."""
    from ops import audit_report

    expected = _head(expect_head) if expect_head else None
    target = _system(data_dir)
    with _progress() as bar:
        task = bar.add_task("verifying the audit chain", total=None)
        report = target.run(
            audit_report.check(
                target.database_url, lambda done, total: bar.update(task, completed=done, total=total), expected
            )
        )
    if output is Output.JSON:
        _print_json(report.as_json())
    else:
        _print_audit_report(report)
    if not report.ok:
        raise typer.Exit(Code.FAILED)


def _print_audit_report(report: "audit_report.AuditReport") -> None:
    found = report.verified
    if found.broken is not None:
        broken = found.broken
        which = f"entry {broken.seq}" + (f" (event {broken.event_id})" if broken.event_id else "")
        typer.echo(f"audit chain broken: {which} was {broken.kind}: {broken.detail}", err=True)
        typer.echo(f"the {found.count} entries before it verify", err=True)
    if report.head_problem is not None:
        typer.echo(f"audit chain broken: {report.head_problem}", err=True)
    if report.unrecorded:
        first = report.unrecorded[0]
        typer.echo(
            f"audit log incomplete: {len(report.unrecorded)} events the vault sent are not in it "
            f"(first: event {first.event_id}, sent {first.sent_at:%Y-%m-%d %H:%M:%S%z})",
            err=True,
        )
    if not report.ok:
        return
    if report.unrecorded is None:
        typer.echo("(the vault's outbox is not readable with this database role: sent events not compared)")
    typer.echo(f"audit chain verified: {found.count} entries, head {found.head_seq} hash {found.head_hash.hex()}")


def _head(value: str) -> tuple[int, bytes]:
    seq, _, digest = value.partition(":")
    try:
        return int(seq), bytes.fromhex(digest)
    except ValueError:
        usage = "--expect-head takes SEQ:HASH as `audit verify` prints them (head 42 hash ab12… is 42:ab12…)"
        raise fail(usage, Code.USAGE) from None


def main() -> None:
    app()
