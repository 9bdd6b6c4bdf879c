"""Benchmark credential reveals against OpenBao's audited KV read. Seed: 100 credentials under 10 clients and 32
managers. Measure: wrk on random reveals with env keys, then with OpenBao Transit keys, then on OpenBao's read.
Print: req/s, p50, p99, the ratios reveal/OpenBao, and bench/results/reveal.json.

Steps, options, goal and the figures measured so far: bench/README.md (`reveal.py`). Needs wrk.
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from harness import (  # run as a script, bench/ is on the path
    WARMUP_S,
    BenchError,
    Load,
    System,
    free_port,
    load_details,
    new_accounts,
    run_main,
    start_up,
    stop,
    wait_http,
    wrk,
)

BAO = Path(sys.executable).parent / "bao"
GOAL_RATIO = 0.35  # issue 20: at least a third of what OpenBao serves in the same run
CLIENTS, PER_CLIENT = 10, 10
MANAGERS = 32  # who reveal, each from a client IP of its own
PROFILED = ("gateway", "vault")


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
    work: Path, name: str, env: dict[str, str], duration: int, connections: int, profile_s: int
) -> tuple[Load, dict[str, Any]]:
    data_dir = work / name
    up = start_up(data_dir, RELAXED | env)
    try:
        url, paths = up.url, credentials(up)
        script = work / f"{name}.lua"
        script.write_text(lua(paths, {}, managers(up, url)))
        database_url = up.info()["database_url"]
        fsyncs = _wal_fsyncs(database_url)
        load = wrk(
            f"reveal, {name} keys", url, None, duration, connections,
            script=script, cpu_of=data_dir, profile=PROFILED, profile_s=profile_s,
        )  # fmt: skip
        flushes = _wal_fsyncs(database_url) - fsyncs
        events = _outbox_counts(database_url)
        warm = load.requests + int(WARMUP_S * load.requests_per_s)
        return load, events | {"wal_flushes": flushes, "wal_flushes_per_reveal": round(flushes / max(1, warm), 3)}
    finally:
        up.stop()


# MANAGERS managers, each from an IP of its own, reveal as fast as they can: the reveal limits stay on (counting is
# part of a reveal's cost) but high enough for that; the gateway believes the bench's X-Forwarded-For.
RELAXED = {
    "CLIENTVAULT_REVEAL_USER_MAX": "1000000000",
    "CLIENTVAULT_REVEAL_IP_MAX": "1000000000",
    "CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32",
}


def credentials(up: System) -> list[str]:
    """As the first admin (`up` on a new data dir), CLIENTS clients with PER_CLIENT credentials each: the path
    of each credential's reveal."""
    if up.admin is None:
        raise BenchError("`up` did not print the first admin")
    answer = httpx.post(f"{up.url}/auth/sign-in", json={"email": up.admin[0], "password": up.admin[1]}, timeout=10)
    headers = {"Authorization": f"Bearer {answer.json()['accessToken']}"}
    paths = []
    with httpx.Client(base_url=up.url, headers=headers, timeout=10) as http:
        for c in range(CLIENTS):
            made = http.post("/clients", json={"name": f"Bench {c}"})
            client_id = made.json()["id"] if made.status_code == 201 else str(uuid.uuid4())
            for n in range(PER_CLIENT):
                body = {"label": f"Credential {n}", "username": f"user{n}", "secret": f"secret-{c}-{n}-🔑"}
                created = http.post(f"/clients/{client_id}/credentials", json=body)
                created.raise_for_status()
                paths.append(f"/clients/{client_id}/credentials/{created.json()['id']}")
        http.get(paths[0]).raise_for_status()
    return paths


def managers(up: System, url: str) -> list[tuple[str, str]]:
    """MANAGERS manager accounts, each signed in from a client IP of its own: (access token, IP)."""
    signed_in = []
    for n, account in enumerate(new_accounts(up, "manager", MANAGERS, "manager")):
        ip = f"10.0.{n // 250}.{n % 250 + 1}"
        answer = httpx.post(
            f"{url}/auth/sign-in", json={"email": account.email, "password": account.password},
            headers={"X-Forwarded-For": ip}, timeout=10,
        )  # fmt: skip
        answer.raise_for_status()
        signed_in.append((answer.json()["accessToken"], ip))
    return signed_in


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


def run(work: Path, duration: int, connections: int, profile_s: int) -> dict[str, Any]:
    bao = OpenBao(work)
    try:
        env_load, env_events = reveal_load(work, "env", {}, duration, connections, profile_s)
        transit_env = {
            "CLIENTVAULT_KEY_PROVIDER": "transit",
            "CLIENTVAULT_TRANSIT_ADDR": bao.addr,
            "CLIENTVAULT_TRANSIT_TOKEN": bao.token,
        }
        transit_load, transit_events = reveal_load(work, "transit", transit_env, duration, connections, 0)
        script = work / "bao.lua"
        script.write_text(lua(["/v1/secret/data/bench"], {"X-Vault-Token": bao.token}))
        bao_load = wrk("OpenBao audited KV read", bao.addr, None, duration, connections, script=script)
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
        rows += load_details(r)
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per target (default 15)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dirs and logs")
    parser.add_argument(
        "--profile-s", type=int, default=8, help="seconds of a further reveal load under py-spy (default 8; 0: none)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-reveal-"))
    return run_main(
        "reveal",
        lambda: run(work, args.duration, args.connections, args.profile_s),
        summary,
        remove=None if args.keep_data else work,
        kept=f"kept the data dirs and logs in {work}",
    )


if __name__ == "__main__":
    sys.exit(main())
