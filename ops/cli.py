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

    from clientvault.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from clientvault.events import TrustedKeys
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
credentials_app = typer.Typer(
    help="Import another tool's export file, or export a client's credentials, encrypted (as an admin, via the API).",
    no_args_is_help=True,
)
app.add_typer(credentials_app, name="credentials")
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


def _count(number: int, noun: str) -> str:
    """ "1 credential", "2 credentials", "0 rows"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


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
def migrate() -> None:
    """Apply every service's schema migrations to DATABASE_URL and, when NATS_URL (the operator's) is set, create
    the AUDIT stream and the revocation bucket, or bring them to CLIENTVAULT_NATS_REPLICAS and the stream's
    limits (the deployment's migration job). With CLIENTVAULT_ROTATION_TASKS_PASSWORD set, also issue the vault's
    rotation-tasks identity with that password (docs/security.md)."""
    from clientvault.settings import MigrateSettings
    from ops.migrate import upgrade_all

    config = _settings(MigrateSettings)
    target = Target(config.require_database_url(), config.nats_url)
    target.call(lambda: upgrade_all(target.database_url))
    typer.echo("migrations applied")
    if config.rotation_tasks_password is not None:
        from services.auth.admin import issue_rotation_identity

        password = config.rotation_tasks_password.get_secret_value()
        issued = issue_rotation_identity(target.database_url, email=config.rotation_tasks_email, password=password)
        typer.echo(f"rotation-tasks identity in place: {target.run(issued).email}")
    if target.nats_url:
        from ops.jetstream import bootstrap

        target.run(bootstrap(target.nats_url, config))
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
                    "mfa_enabled": u.mfa_enabled,
                }
                for u in users
            ]
        )
        return
    columns = ("id", "email", "full name", "role", "created", "state", "mfa")
    rows = [
        (
            str(u.id),
            u.email,
            u.full_name,
            u.role.value,
            u.created_at.isoformat(),
            "disabled" if u.disabled_at else "active",
            "totp" if u.mfa_enabled else "off",
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


def _revoking(data_dir: Path) -> tuple[Target, str]:
    """The system, and its NATS URL: a command that ends sessions must reach every running verifier."""
    target = _system(data_dir)
    if target.nats_url is None:
        raise fail("NATS_URL is not set: ending sessions must reach every running verifier", Code.USAGE)
    return target, target.nats_url


def _unless_broadcast(broadcast: bool) -> None:
    if not broadcast:
        typer.echo(
            "warning: NATS did not take the revocation: the user cannot sign in or refresh, but access tokens "
            "already issued keep working until they expire (at most CLIENTVAULT_ACCESS_TOKEN_TTL_S)",
            err=True,
        )
        raise typer.Exit(Code.UNAVAILABLE)


def _set_disabled(email: str, data_dir: Path, *, disabled: bool) -> None:
    from services.auth import admin

    target, nats_url = _revoking(data_dir)
    change = admin.disable if disabled else admin.enable
    user, broadcast = target.run(change(target.database_url, nats_url, email))
    typer.echo(f"{'disabled' if disabled else 'enabled'} {user.email}")
    _unless_broadcast(broadcast)


@users_app.command("disable")
def users_disable(email: Annotated[str, typer.Option()], data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Disable a user: no sign-in or refresh, and their access tokens stop working within a second."""
    _set_disabled(email, data_dir, disabled=True)


@users_app.command("enable")
def users_enable(email: Annotated[str, typer.Option()], data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Enable a disabled user again (they sign in anew)."""
    _set_disabled(email, data_dir, disabled=False)


@users_app.command("set-role")
def users_set_role(
    email: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="admin, manager or read_only.")],
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Change a user's role; their sessions end (the last active admin stays admin)."""
    from services.auth import admin

    target, nats_url = _revoking(data_dir)
    user, broadcast = target.run(admin.set_role(target.database_url, nats_url, email, role))
    typer.echo(f"{user.email} is now {user.role.value}")
    _unless_broadcast(broadcast)


@users_app.command("reset-password")
def users_reset_password(email: Annotated[str, typer.Option()], data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Give a user a one-time temporary password (printed once; changed at next sign-in); their sessions end."""
    from services.auth import admin

    target, nats_url = _revoking(data_dir)
    temporary, broadcast = target.run(admin.reset_password(target.database_url, nats_url, email))
    typer.echo(f"temporary password for {email}: {temporary}")
    _unless_broadcast(broadcast)


@users_app.command("mfa-reset")
def users_mfa_reset(email: Annotated[str, typer.Option()], data_dir: DataDirOption = DEFAULT_DATA_DIR) -> None:
    """Turn a user's MFA off (a lost device): they sign in with the password and may enrol again."""
    from services.auth import admin

    target = _system(data_dir)
    target.run(admin.mfa_reset(target.database_url, email))
    typer.echo(f"MFA is off for {email}")


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


def _audit_keys(data_dir: Path) -> "tuple[TrustedKeys, list[Ed25519PublicKey]]":
    """The producers' event keys and the checkpoint public keys to verify with: from the environment
    (CLIENTVAULT_EVENT_PUBLIC_KEYS, CLIENTVAULT_AUDIT_CHECKPOINT_PUBLIC_KEYS), else those of `up`'s data dir."""
    from clientvault import ed25519
    from clientvault.events import TrustedKeys
    from clientvault.settings import OperatorSettings
    from ops.datadir import DataDir

    settings = _settings(OperatorSettings)
    has_data_dir = (data_dir / "secrets.json").exists()
    event_keys = settings.event_public_keys
    if not event_keys and has_data_dir:
        event_keys = [signer.trusted_entry for signer in DataDir.at(data_dir).event_signers()]
    if not event_keys:
        message = "set CLIENTVAULT_EVENT_PUBLIC_KEYS (producer:base64,…): signatures cannot be checked without them"
        raise fail(message, Code.USAGE)
    try:
        checkpoint_keys = [
            ed25519.public_key(key, "CLIENTVAULT_AUDIT_CHECKPOINT_PUBLIC_KEYS")
            for key in settings.audit_checkpoint_public_keys
        ]
        if not checkpoint_keys and has_data_dir:
            checkpoint_keys = [_checkpoint_key(data_dir).public_key()]
        return TrustedKeys(event_keys), checkpoint_keys
    except ValueError as error:
        raise fail(str(error), Code.USAGE) from None


def _checkpoint_key(data_dir: Path) -> "Ed25519PrivateKey":
    """The key that signs checkpoints: CLIENTVAULT_AUDIT_CHECKPOINT_KEY, else the data dir's."""
    from clientvault import ed25519
    from clientvault.settings import OperatorSettings
    from ops.datadir import DataDir

    key = _settings(OperatorSettings).audit_checkpoint_key
    if key is not None:
        encoded, where = key.get_secret_value(), "CLIENTVAULT_AUDIT_CHECKPOINT_KEY"
    elif (data_dir / "secrets.json").exists():
        encoded, where = DataDir.at(data_dir).secrets()["audit_checkpoint_key"], "the data dir's audit_checkpoint_key"
    else:
        raise fail("set CLIENTVAULT_AUDIT_CHECKPOINT_KEY (base64 of a 32-byte Ed25519 private key)", Code.USAGE)
    try:
        return ed25519.private_key(encoded, where)
    except ValueError as error:
        raise fail(str(error), Code.USAGE) from None


def _audit_report(
    data_dir: Path, target: "Target", heads: list[tuple[int, bytes]], checkpoints: Path | None
) -> "audit_report.AuditReport":
    from ops import audit_report

    keys, checkpoint_keys = _audit_keys(data_dir)
    if checkpoints is not None and checkpoints.exists() and not checkpoint_keys:
        raise fail("set CLIENTVAULT_AUDIT_CHECKPOINT_PUBLIC_KEYS: checkpoints cannot be checked without it", Code.USAGE)
    anchored, checkpoint_problem = audit_report.checkpointed_heads(checkpoints, checkpoint_keys)
    with _progress() as bar:
        task = bar.add_task("verifying the audit chain", total=None)
        return target.run(
            audit_report.check(
                target.database_url,
                keys,
                lambda done, total: bar.update(task, completed=done, total=total),
                heads + anchored,
                checkpoint_problem,
            )
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
    checkpoints: Annotated[
        Path | None,
        typer.Option(help="A checkpoint file or directory (`audit checkpoint`): every head in it must still be there."),
    ] = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Walk the audit chain: recompute every hash and check every producer's signature; name the first entry
    changed, removed, reordered or forged. Also check that every event the producers (vault, auth) sent is in the log
    and every recent entry was sent by a producer (the audit service's own read entries are proved by signature),
    and that earlier heads (--expect-head, --checkpoints) are still there. Exit 1 when any check fails."""
    heads = [_head(expect_head)] if expect_head else []
    if checkpoints is not None and not checkpoints.exists():
        raise fail(f"{checkpoints}: no such file or directory", Code.USAGE)
    report = _audit_report(data_dir, _system(data_dir), heads, checkpoints)
    if output is Output.JSON:
        _print_json(report.as_json())
    else:
        _print_audit_report(report)
    if not report.ok:
        raise typer.Exit(Code.FAILED)


def _print_audit_report(report: "audit_report.AuditReport") -> None:
    for problem in report.problems:
        typer.echo(problem, err=True)
    if not report.ok:
        return
    if not report.gaps.compared:
        typer.echo("(the producers' outboxes are not readable with this database role: sent events not compared)")
    found = report.verified
    typer.echo(f"audit chain verified: {found.count} entries, head {found.head_seq} hash {found.head_hash.hex()}")


@audit_app.command("checkpoint")
def audit_checkpoint(
    to: Annotated[
        Path,
        typer.Option(
            "--to",
            help="A directory (a new file per checkpoint, never rewritten) or a file (a line appended), outside the"
            " database and ideally write-once.",
        ),
    ],
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Verify the chain (and the checkpoints already at --to), then sign its head with the audit checkpoint key and
    add it to --to, so that a later `audit verify --checkpoints` catches removed or rewritten entries."""
    from ops import checkpoints as anchored
    from services.audit import admin

    key = _checkpoint_key(data_dir)
    target = _system(data_dir)
    report = _audit_report(data_dir, target, [], to)
    if not report.ok:
        _print_audit_report(report)
        raise fail("no checkpoint written: the chain does not verify")
    seq, digest = target.run(admin.head(target.database_url))
    if seq < report.verified.head_seq:
        raise fail("the chain is shorter than it was a moment ago: entries were removed")
    # Entries appended since the walk are anchored unverified: the next checkpoint's verify walks them.
    written = anchored.write(anchored.sign(seq, digest, key), to)
    typer.echo(f"checkpoint: head {seq} hash {digest.hex()} added to {written}")


@app.command("backup")
def backup(
    out: Annotated[Path, typer.Option("--out", help="A new (or empty) directory for the backup.")],
    include_secrets: Annotated[
        bool,
        typer.Option(help="Also copy the data dir's secrets.json (the KEK among them) into the backup: keep it apart."),
    ] = False,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Back up the running system: its database and roles, and a signed checkpoint of the audit chain's head
    (restore with `clientvault restore`; see README, "Backup and restore")."""
    from ops import backup as backups
    from ops.datadir import DataDir
    from services.audit import admin

    target = _system(data_dir)
    if include_secrets and not (data_dir / "secrets.json").exists():
        raise fail(f"{data_dir} has no secrets.json to include", Code.USAGE)
    secrets = DataDir.at(data_dir).secrets() if include_secrets else None
    key = _checkpoint_key(data_dir)
    try:
        made = backups.create(
            target.database_url,
            out,
            head=target.run(admin.head(target.database_url)),
            checkpoint_key=key,
            secrets=secrets,
            step=lambda what: typer.echo(f"backing up: {what}", err=True),
        )
    except backups.BackupError as error:
        raise fail(str(error)) from None
    typer.echo(f"backup written to {made.path} (audit head {made.head_seq}, {len(made.files)} files)")
    if secrets is None:
        typer.echo("it holds no secrets: keep the data dir's secrets.json apart, restore needs it (--secrets)")


@app.command("restore")
def restore(
    source: Annotated[Path, typer.Option("--from", help="A directory written by `clientvault backup`.")],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="A new data dir to restore into.")],
    secrets: Annotated[
        Path | None, typer.Option(help="The secrets.json kept apart (when the backup holds none).")
    ] = None,
) -> None:
    """Restore a backup into a new data dir; then start it with `clientvault up --data-dir …` and check it with
    `clientvault audit verify --checkpoints <data dir>/checkpoints`."""
    from ops import backup as backups

    try:
        kept = asyncio.run(
            backups.restore(source, data_dir, secrets, lambda what: typer.echo(f"restoring: {what}", err=True))
        )
    except backups.BackupError as error:
        raise fail(str(error)) from None
    typer.echo(f"restored into {data_dir.resolve()}: start it with `clientvault up --data-dir {data_dir}`, then")
    typer.echo(f"check the audit chain against the backup's head: `clientvault audit verify --checkpoints {kept}`")


@app.command("public-key")
def public_key(
    producer: Annotated[
        str | None, typer.Option(help="Print it as CLIENTVAULT_EVENT_PUBLIC_KEYS lists a producer's key.")
    ] = None,
) -> None:
    """Print the public half (base64) of an Ed25519 private key read from stdin: an event signing key
    (with --producer) for CLIENTVAULT_EVENT_PUBLIC_KEYS, or a checkpoint key for
    CLIENTVAULT_AUDIT_CHECKPOINT_PUBLIC_KEYS."""
    from clientvault import ed25519
    from clientvault.events import PRODUCER_OF

    producers = sorted(set(PRODUCER_OF.values()))
    if producer is not None and producer not in producers:
        raise fail(f"{producer} is no audit producer (producers: {', '.join(producers)})", Code.USAGE)
    try:
        public = ed25519.encode_public(ed25519.private_key(sys.stdin.read(), "the key on stdin").public_key())
    except ValueError as error:
        raise fail(str(error), Code.USAGE) from None
    typer.echo(f"{producer}:{public}" if producer else public)


class ImportFormat(StrEnum):
    BITWARDEN_JSON = "bitwarden-json"
    KEEPASS_XML = "keepass-xml"
    CSV = "csv"


ClientIdOption = Annotated[str, typer.Option("--client-id", help="The client's id.")]
EmailOption = Annotated[
    str, typer.Option("--email", envvar="CLIENTVAULT_ADMIN_EMAIL", help="The admin who signs in to the API.")
]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(help="Read the admin's password from stdin's first line (and an MFA code from its second)."),
]
ApiUrlOption = Annotated[
    str | None,
    typer.Option(
        "--api-url", envvar="CLIENTVAULT_API_URL", help="The gateway; default: the `up` running on the data dir."
    ),
]


def _api_url(api_url: str | None, data_dir: Path) -> str:
    if api_url:
        return api_url
    from ops.datadir import DataDir

    running = DataDir.at(data_dir).read_system() if (data_dir / "run").exists() else None
    if running is None or not running.get("gateway_url"):
        raise fail(
            f"nothing runs on {data_dir.resolve()}: start `clientvault up` there, or give --api-url", Code.UNAVAILABLE
        )
    return str(running["gateway_url"])


def _through_api(api_url: str | None, data_dir: Path, email: str, password_stdin: bool, work: Callable[[Any], T]) -> T:
    """Signs in to the API as the admin, runs `work` with the session, signs out; failures become exit codes."""
    import httpx

    from ops import transfer

    url = _api_url(api_url, data_dir)
    try:
        login = transfer.read_login(email, password_stdin, lambda text: typer.prompt(text, hide_input=True, err=True))
        with transfer.Session(url, login) as session:
            return work(session)
    except transfer.ApiError as error:
        raise fail(str(error), Code.USAGE if error.status == 2 else Code.FAILED) from None
    except httpx.HTTPError as error:
        raise fail(f"the API at {url} cannot be reached: {error.__class__.__name__}", Code.UNAVAILABLE) from None


def _byte_bar(description: str) -> tuple["Progress", Callable[[int, int], None]]:
    bar = _progress()
    task = bar.add_task(description, total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


@credentials_app.command("import")
def credentials_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The export file.")],
    client_id: ClientIdOption,
    format_: Annotated[ImportFormat, typer.Option("--format", help="What wrote the file.")],
    email: EmailOption,
    dry_run: Annotated[bool, typer.Option(help="Only check the file and report; write nothing.")] = False,
    password_stdin: PasswordStdinOption = False,
    api_url: ApiUrlOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    output: OutputOption = Output.TEXT,
) -> None:
    """Import a Bitwarden JSON, KeePass 2 XML or CSV export into a client (docs/credential-tools.md): the good
    rows in one transaction, each audited; bad rows reported by number and skipped."""
    from ops import transfer

    def work(session: transfer.Session) -> dict[str, Any]:
        bar, progress = _byte_bar("upload")
        with bar:
            return transfer.import_file(session, client_id, format_.value, file, dry_run=dry_run, progress=progress)

    report = _through_api(api_url, data_dir, email, password_stdin, work)
    if output is Output.JSON:
        _print_json(report)
        return
    verb = "would import" if report["dryRun"] else "imported"
    typer.echo(f"{verb} {_count(report['imported'], 'credential')}, skipped {_count(report['skipped'], 'row')}")
    for problem in report["problems"]:
        typer.echo(f"row {problem['row']}: {problem['message']}")


@credentials_app.command("export")
def credentials_export(
    client_id: ClientIdOption,
    recipient: Annotated[str, typer.Option(help="The age public key (age1…) that may decrypt the file.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write (must not exist); mode 0600.")],
    email: EmailOption,
    password_stdin: PasswordStdinOption = False,
    api_url: ApiUrlOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Export a client's credentials as an age-encrypted Bitwarden JSON file; one audit event per credential."""
    from ops import transfer

    if out.exists():
        raise fail(f"{out} exists: give a new file", Code.USAGE)

    def work(session: transfer.Session) -> int:
        bar, progress = _byte_bar("download")
        with bar:
            return transfer.export_file(session, client_id, recipient, out, progress=progress)

    exported = _through_api(api_url, data_dir, email, password_stdin, work)
    typer.echo(f"exported {_count(exported, 'credential')} to {out} (decrypt: age -d -i KEY_FILE {out})")


def _head(value: str) -> tuple[int, bytes]:
    seq, _, digest = value.partition(":")
    try:
        return int(seq), bytes.fromhex(digest)
    except ValueError:
        usage = "--expect-head takes SEQ:HASH as `audit verify` prints them (head 42 hash ab12… is 42:ab12…)"
        raise fail(usage, Code.USAGE) from None


def main() -> None:
    app()
