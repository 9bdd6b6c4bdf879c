"""The floor of the architecture: what a gateway → gRPC service → PostgreSQL path costs in this stack with none of
ClientVault's own code, against the same anchors as `users_me.py` and `reveal.py`, in one run.

Issue 20 asks for ratios against one-process anchors (a FastAPI monolith, OpenBao). The owner's design puts a
FastAPI gateway and a gRPC service between a request and PostgreSQL. This script measures that design bare:
a "front" (FastAPI on uvicorn with uvloop and httptools, one process, as the gateway runs) calling a "hop"
(a grpc.aio server on uvloop, one process, as a service runs) over the project's own protobuf messages, which
reads PostgreSQL with prepared statements on a psycopg pool. No token check, no middleware, no policy, no logs;
the reveal's hop does what any audited reveal must at least do (read the sealed secret, write the audit event
in the same transaction, decrypt it with AES-256-GCM) and nothing after the commit (no relay, NATS or chain).
So its req/s is an upper bound for any implementation of the design in this stack, and its ratio to the anchor
the highest ratio a goal can ask of it. ClientVault's own paths run in the same run for the comparison.

Steps, options and the figures measured so far: bench/README.md (`floor.py`). Needs wrk and OpenBao (`bao`, from
the dev dependencies). Run from the project root: `uv run python bench/floor.py [--duration 10]`.
The script also runs the two skeleton processes: `python bench/floor.py front|hop ...` (it starts them itself).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
import httpx
from harness import (  # run as a script, bench/ is on the path
    GOAL_MARK,
    ROOT,
    BenchError,
    Load,
    free_port,
    load_details,
    machine,
    run_main,
    sign_in,
    start_up,
    stop,
    wait_http,
    wrk,
    wrk_missing,
)
from reveal import RELAXED, OpenBao, credentials, lua, managers

from clientvault.v1 import auth_pb2, vault_pb2

GOALS = {"users_me": 0.5, "reveal": 0.35}  # issue 20's ratios to the anchors
ME = "SELECT id, email, full_name, role, created_at FROM auth.users WHERE id = %s"
SEALED = "SELECT label, nonce, ciphertext FROM floor.secrets WHERE id = %s AND client_id = %s"
EVENT = (
    "INSERT INTO floor.outbox (event_id, action, occurred_at, user_id, credential_id, client_id) "
    "VALUES (%s, 'credential_reveal', now(), %s, %s, %s)"
)
SCHEMA = """
DROP SCHEMA IF EXISTS floor CASCADE;
CREATE SCHEMA floor;
CREATE TABLE floor.secrets (id uuid PRIMARY KEY, client_id uuid NOT NULL, label text NOT NULL, nonce bytea NOT NULL,
                            ciphertext bytea NOT NULL);
CREATE TABLE floor.outbox (id bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, action text NOT NULL,
                           occurred_at timestamptz NOT NULL, user_id uuid NOT NULL, credential_id uuid NOT NULL,
                           client_id uuid NOT NULL, sent_at timestamptz);
"""
HOP_GET_ME, HOP_REVEAL = "/floor.Hop/GetMe", "/floor.Hop/Reveal"
USER_HEADER = "x-user-id"  # the hop's caller, as the gateway's attested identity would name it
KEY_ENV = "CLIENTVAULT_FLOOR_KEY"  # the skeleton's AES-256 key, hex (a fresh one each run)
PLAINTEXT = "floor-plaintext-🔑"  # the one sealed value the skeleton reveals
POOL_SIZE = 10  # as the services' pools and the monolith's


# ---- the skeleton's processes ----


async def serve_hop(port: int, database_url: str) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from psycopg_pool import AsyncConnectionPool

    aead = AESGCM(bytes.fromhex(os.environ[KEY_ENV]))
    pool = AsyncConnectionPool(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE, open=False,
                               kwargs={"autocommit": True})  # fmt: skip
    await pool.open(wait=True)

    def caller(context: grpc.aio.ServicerContext) -> str:
        return str(dict(context.invocation_metadata() or ())[USER_HEADER])

    async def get_me(_request: auth_pb2.GetMeRequest, context: grpc.aio.ServicerContext) -> auth_pb2.User:
        async with pool.connection() as conn:
            row = await (await conn.execute(ME, (caller(context),), prepare=True)).fetchone()
        if row is None:  # the bench seeded it: a failure of the run, not an answer
            raise LookupError("no such user")
        found_id, email, full_name, role, created_at = row
        user = auth_pb2.User(
            id=str(found_id), email=email, full_name=full_name, role=auth_pb2.Role.Value(f"ROLE_{role.upper()}")
        )
        user.created_at.FromDatetime(created_at)
        return user

    async def reveal(
        request: vault_pb2.RevealCredentialRequest, context: grpc.aio.ServicerContext
    ) -> vault_pb2.RevealedCredential:
        async with pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(SEALED, (request.credential_id, request.client_id), prepare=True)
            ).fetchone()
            if row is None:
                raise LookupError("no such credential")
            await conn.execute(
                EVENT, (uuid.uuid4(), caller(context), request.credential_id, request.client_id), prepare=True
            )
        label, nonce, ciphertext = row
        secret = aead.decrypt(nonce, ciphertext, request.credential_id.encode())
        return vault_pb2.RevealedCredential(id=request.credential_id, label=label, secret=secret.decode())

    handlers = grpc.method_handlers_generic_handler(
        "floor.Hop",
        {
            "GetMe": grpc.unary_unary_rpc_method_handler(
                get_me, auth_pb2.GetMeRequest.FromString, auth_pb2.User.SerializeToString
            ),
            "Reveal": grpc.unary_unary_rpc_method_handler(
                reveal, vault_pb2.RevealCredentialRequest.FromString, vault_pb2.RevealedCredential.SerializeToString
            ),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def front_app() -> Any:
    """The front's FastAPI app (a uvicorn factory): the two routes, each one gRPC call to the hop."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    hop, user_id = os.environ["CLIENTVAULT_FLOOR_HOP"], os.environ["CLIENTVAULT_FLOOR_USER"]
    calls: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        channel = grpc.aio.insecure_channel(hop)
        calls["me"] = channel.unary_unary(HOP_GET_ME, auth_pb2.GetMeRequest.SerializeToString, auth_pb2.User.FromString)
        calls["reveal"] = channel.unary_unary(
            HOP_REVEAL, vault_pb2.RevealCredentialRequest.SerializeToString, vault_pb2.RevealedCredential.FromString
        )
        yield
        await channel.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    identity = ((USER_HEADER, user_id),)

    @app.get("/users/me")
    async def me() -> dict[str, Any]:
        user = await calls["me"](auth_pb2.GetMeRequest(), metadata=identity, timeout=5)
        created = user.created_at.ToDatetime().isoformat(timespec="milliseconds") + "Z"
        role = auth_pb2.Role.Name(user.role).removeprefix("ROLE_").lower()
        return {"id": user.id, "email": user.email, "fullName": user.full_name, "role": role, "createdAt": created}

    @app.get("/clients/{client_id}/credentials/{credential_id}/reveal")
    async def reveal(client_id: str, credential_id: str, request: Request) -> JSONResponse:
        ask = vault_pb2.RevealCredentialRequest(client_id=client_id, credential_id=credential_id)
        found = await calls["reveal"](ask, metadata=identity, timeout=5)
        body = {"id": found.id, "label": found.label, "secret": found.secret}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return app


def serve(role: str, port: int, hop: str | None) -> None:
    if role == "hop":
        import uvloop

        uvloop.run(serve_hop(port, os.environ["DATABASE_URL"]))
        return
    import uvicorn

    os.environ["CLIENTVAULT_FLOOR_HOP"] = str(hop)
    uvicorn.run(
        "floor:front_app", factory=True, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
        access_log=False, log_config=None, server_header=False, timeout_graceful_shutdown=5,
        app_dir=os.path.dirname(os.path.abspath(__file__)),
    )  # fmt: skip


# ---- the measurement ----


def seed(database_url: str) -> tuple[str, bytes]:
    """The skeleton's schema beside ClientVault's, one sealed secret; its reveal path and the key."""
    import psycopg
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(12)
    client_id, credential_id = uuid.uuid4(), uuid.uuid4()
    sealed = AESGCM(key).encrypt(nonce, PLAINTEXT.encode(), str(credential_id).encode())
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute(
            "INSERT INTO floor.secrets VALUES (%s, %s, 'Floor', %s, %s)", (credential_id, client_id, nonce, sealed)
        )
    return f"/clients/{client_id}/credentials/{credential_id}/reveal", key


def start(script: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(ROOT / "bench" / script), *args]
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out)  # fmt: skip


def run(work: Path, duration: int, connections: int) -> dict[str, Any]:
    data_dir = work / "data"
    up = start_up(data_dir, RELAXED)
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    bao: OpenBao | None = None
    loads: dict[str, Load] = {}
    try:
        if up.admin is None:
            raise BenchError("`up` on a new data dir did not print the first admin")
        url, database_url = up.url, up.info()["database_url"]
        token = sign_in(url, *up.admin)
        me = httpx.get(f"{url}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        me.raise_for_status()
        user_id = me.json()["id"]
        reveal_path, key = seed(database_url)
        reveal_paths, callers = credentials(up), managers(up, url)

        env = {"DATABASE_URL": database_url, KEY_ENV: key.hex(), "CLIENTVAULT_FLOOR_USER": user_id}
        hop_port, front_port, monolith_port = free_port(), free_port(), free_port()
        hop = start("floor.py", ["hop", "--port", str(hop_port)], env, work / "hop.log")
        started.append((hop, "floor-hop"))
        front_args = ["front", "--port", str(front_port), "--hop", f"127.0.0.1:{hop_port}"]
        front = start("floor.py", front_args, env, work / "front.log")
        started.append((front, "floor-front"))
        monolith_args = ["--port", str(monolith_port), "--user-id", user_id]
        monolith = start("monolith.py", monolith_args, env, work / "monolith.log")
        started.append((monolith, "monolith"))
        front_url, monolith_url = f"http://127.0.0.1:{front_port}", f"http://127.0.0.1:{monolith_port}"
        wait_http(f"{front_url}/users/me", front, work / "front.log")
        wait_http(f"{monolith_url}/users/me", monolith, work / "monolith.log")
        if httpx.get(f"{front_url}/users/me").json() != me.json():
            raise BenchError(f"the skeleton's /users/me differs from the gateway's: {me.json()}")
        if httpx.get(f"{front_url}{reveal_path}").json()["secret"] != PLAINTEXT:
            raise BenchError("the skeleton's reveal did not decrypt its secret")
        # The skeleton's and the monolith's processes count in the CPU figures by name, as if `up` ran them
        # (harness.up_pids reads run/*.pid).
        for process, name in started:
            (data_dir / "run" / f"{name}.pid").write_text(f"{process.pid}\n")

        reveals = work / "reveal.lua"
        reveals.write_text(lua(reveal_paths, {}, callers))
        for name, target, bearer, script in (
            ("users_me: ClientVault gateway", f"{url}/users/me", token, None),
            ("users_me: skeleton", f"{front_url}/users/me", None, None),
            ("users_me: monolith (anchor)", f"{monolith_url}/users/me", None, None),
            ("reveal: ClientVault gateway", url, None, reveals),
            ("reveal: skeleton", f"{front_url}{reveal_path}", None, None),
        ):
            loads[name] = wrk(name, target, bearer, duration, connections, cpu_of=data_dir, script=script)
        bao = OpenBao(work)
        bao_script = work / "bao.lua"
        bao_script.write_text(lua(["/v1/secret/data/bench"], {"X-Vault-Token": bao.token}))
        loads["reveal: OpenBao audited read (anchor)"] = wrk(
            "reveal: OpenBao audited read (anchor)", bao.addr, None, duration, connections, script=bao_script
        )
    finally:
        if bao is not None:
            bao.stop()
        for process, name in reversed(started):
            stop(process, name)
        up.stop()
    per_s = {name: load.requests_per_s for name, load in loads.items()}
    me_anchor, reveal_anchor = per_s["users_me: monolith (anchor)"], per_s["reveal: OpenBao audited read (anchor)"]
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "loads": {name: asdict(load) for name, load in loads.items()},
        "ratios": {
            "users_me": {
                "clientvault": round(per_s["users_me: ClientVault gateway"] / me_anchor, 3),
                "skeleton": round(per_s["users_me: skeleton"] / me_anchor, 3),
            },
            "reveal": {
                "clientvault": round(per_s["reveal: ClientVault gateway"] / reveal_anchor, 3),
                "skeleton": round(per_s["reveal: skeleton"] / reveal_anchor, 3),
            },
        },
        "goals": GOALS,
    }


def summary(results: dict[str, Any]) -> str:
    rows = [f"{'':40} {'req/s':>9} {'p50':>10} {'p99':>10}"]
    for name, load in results["loads"].items():
        rows.append(f"{name:40} {load['requests_per_s']:9.1f} {load['p50_ms']:7.2f} ms {load['p99_ms']:7.2f} ms")
    for path, ratio in results["ratios"].items():
        goal = results["goals"][path]
        rows.append(
            f"{path}: ClientVault/anchor {ratio['clientvault']:.2f}, skeleton/anchor {ratio['skeleton']:.2f} "
            f"(goal >= {goal}: {GOAL_MARK[ratio['clientvault'] >= goal]}; the skeleton alone "
            f"{'reaches' if ratio['skeleton'] >= goal else 'does NOT reach'} it)"
        )
    for name, load in results["loads"].items():
        if load.get("cpu_s"):
            rows.append(f"  {name}:")
            rows += load_details(load)
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    for role in ("front", "hop"):
        process = sub.add_parser(role, help=f"run the skeleton's {role} (the script starts it itself)")
        process.add_argument("--port", type=int, required=True)
        if role == "front":
            process.add_argument("--hop", required=True, help="host:port of the hop")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per target (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and logs")
    args = parser.parse_args()
    if args.role:
        serve(args.role, args.port, getattr(args, "hop", None))
        return 0
    if wrk_missing():
        return 2
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-floor-"))
    return run_main(
        "floor",
        lambda: run(work, args.duration, args.connections),
        summary,
        remove=None if args.keep_data else work,
        kept=f"kept the data dir and logs in {work}",
    )


if __name__ == "__main__":
    sys.exit(main())
