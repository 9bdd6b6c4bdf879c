"""Benchmark the audit log. Seed: `--events` chained audit events by COPY. Measure: the newest `/audit-logs`
pages through the gateway and as raw SQL, ingest from the vault's outbox to the audit table, `audit verify`.
Print: the figures against the goals, and bench/results/audit.json.

Steps, options, goals and the figures measured so far: bench/README.md (`audit.py`).
Run from the project root: `uv run python bench/audit.py [--events 10000000] [--requests 300] [--keep-data]`.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from harness import ROOT, BenchError, start_up  # run as a script, bench/ is on the path
from ingest import ingest
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

sys.path.insert(0, str(ROOT))
from clientvault.events import ACTIONS, EventSigner
from ops.datadir import DataDir
from services.audit.chain import GENESIS, Entry, link
from services.vault.admin import OUTBOX_RETENTION

RESULTS = ROOT / "bench" / "results" / "audit.json"
USERS, CLIENTS, PER_CLIENT = 1_000, 10_000, 10
CHUNK = 100_000
STEP = timedelta(milliseconds=10)
GOAL_P50_MS, GOAL_INGEST = 20.0, 5_000.0
COLUMNS = (
    "seq", "event_id", "action", "occurred_at", "user_id", "user_email", "user_full_name", "credential_id",
    "credential_label", "client_id", "ip", "user_agent", "request_id", "key_id", "signature", "prev_hash", "hash",
    "user_id_ordinal",
    "client_id_ordinal", "credential_id_ordinal", "action_ordinal",
)  # fmt: skip


def ids(prefix: int, n: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=(prefix << 96) | i) for i in range(n)]


def seed(database_url: str, events: int, signer: EventSigner) -> float:
    """Chains `events` signed entries (as the consumer would) that end before the outbox's retention: history
    whose outbox rows are long purged, so `audit verify` finds nothing a producer did not send."""
    users, clients = ids(1, USERS), ids(2, CLIENTS)
    credentials = [(c, uuid.UUID(int=(3 << 96) | (i * PER_CLIENT + j))) for i, c in enumerate(clients)
                   for j in range(PER_CLIENT)]  # fmt: skip
    ordinals: dict[Any, int] = {}
    start = datetime.now(UTC) - OUTBOX_RETENTION - timedelta(days=1) - STEP * events
    started = time.monotonic()
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        Progress(TextColumn("seeding audit events"), *columns) as bar,
    ):
        task = bar.add_task("seed", total=events)
        if conn.execute("SELECT count(*) FROM audit.events").fetchone() != (0,):
            raise BenchError("the audit table is not empty: seed a new data dir")
        seq, prev = 0, GENESIS
        while seq < events:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('clientvault.audit.chain'))")
                with conn.cursor().copy(f"COPY audit.events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for _ in range(min(CHUNK, events - seq)):
                        seq += 1
                        user = users[seq % USERS]
                        client, credential = credentials[(seq * 7919) % len(credentials)]
                        entry = Entry(
                            uuid.UUID(int=(4 << 96) | seq), ACTIONS[seq % 4], start + STEP * seq, user,
                            f"u{seq % USERS}@example.com", f"User {seq % USERS}", credential, f"cred {credential.int}",
                            client, "10.0.0.1", "bench", "r",
                        )  # fmt: skip
                        entry = replace(entry, key_id=signer.key_id, signature=signer.signature(entry))
                        digest = link(prev, entry)
                        row: list[Any] = [seq, entry.event_id, entry.action, entry.occurred_at, user, entry.user_email,
                                          entry.user_full_name, credential, entry.credential_label, client, entry.ip,
                                          entry.user_agent, entry.request_id, entry.key_id, entry.signature, prev,
                                          digest]  # fmt: skip
                        for key in (("u", user), ("c", client), ("k", credential), ("a", entry.action)):
                            ordinals[key] = ordinals.get(key, 0) + 1
                            row.append(ordinals[key])
                        copy.write_row(row)
                        prev = digest
            bar.update(task, completed=seq)
        conn.execute("ANALYZE audit.events")
    return time.monotonic() - started


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "n": len(ordered),
    }


def timed(n: int, call: Callable[[], None]) -> dict[str, float]:
    for _ in range(10):  # warm-up: pools, channels, caches
        call()
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return percentiles(samples)


def filters(events: int) -> dict[str, dict[str, str]]:
    seq = events - 3  # a recent event's dimensions
    end = datetime.now(UTC)
    return {
        "unfiltered": {},
        "credentialId": {"credentialId": str(uuid.UUID(int=(3 << 96) | ((seq * 7919) % (CLIENTS * PER_CLIENT))))},
        "userId": {"userId": str(uuid.UUID(int=(1 << 96) | (seq % USERS)))},
        "clientId": {
            "clientId": str(uuid.UUID(int=(2 << 96) | (((seq * 7919) % (CLIENTS * PER_CLIENT)) // PER_CLIENT)))
        },
        "action": {"action": "credential_reveal"},
        "time range (10 min)": {"from": (end - timedelta(minutes=10)).isoformat(), "to": end.isoformat()},
    }


PAGE = "SELECT * FROM audit.events WHERE {where} ORDER BY {order} DESC LIMIT 50"
TOTAL = "SELECT {ordinal} FROM audit.events WHERE {column} = %(v)s ORDER BY {ordinal} DESC LIMIT 1"
RANGE = "occurred_at >= %(f)s AND occurred_at <= %(t)s"
RAW = {  # the statements the service runs for each page: the total, then the page
    "unfiltered": (
        "SELECT seq FROM audit.events ORDER BY seq DESC LIMIT 1",
        PAGE.format(where="seq <= (SELECT max(seq) FROM audit.events)", order="seq"),
    ),
    **{
        name: (
            TOTAL.format(column=column, ordinal=f"{column}_ordinal"),
            PAGE.format(where=f"{column} = %(v)s", order=f"{column}_ordinal"),
        )
        for name, column in (
            ("credentialId", "credential_id"),
            ("userId", "user_id"),
            ("clientId", "client_id"),
            ("action", "action"),
        )
    },
    "time range (10 min)": ("SELECT count(*) FROM audit.events WHERE " + RANGE, PAGE.format(where=RANGE, order="seq")),  # noqa: S608
}


def pages(url: str, token: str, database_url: str, events: int, requests: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http, psycopg.connect(
        database_url, autocommit=True
    ) as conn:  # fmt: skip
        for name, params in filters(events).items():
            first = http.get("/audit-logs", params=params)
            if first.status_code != 200:
                raise BenchError(f"{name}: {first.status_code} {first.text}")
            body = first.json()

            def gateway(params: dict[str, str] = params) -> None:
                r = http.get("/audit-logs", params=params)
                if r.status_code != 200:
                    raise BenchError(f"{r.status_code} {r.text}")

            value = next(iter(params.values()), None)
            args = {"v": uuid.UUID(value) if name.endswith("Id") else value,
                    "f": params.get("from"), "t": params.get("to")}  # fmt: skip

            def raw(name: str = name, args: dict[str, Any] = args) -> None:
                for statement in RAW[name]:
                    conn.execute(statement, args).fetchall()

            found[name] = {
                "total": body["total"],
                "items": len(body["items"]),
                "gateway": timed(requests, gateway),
                "sql": timed(requests, raw),
            }
            print(f"bench: {name:<22} total {body['total']:>10,}  gateway {found[name]['gateway']}  "
                  f"sql {found[name]['sql']}", flush=True)  # fmt: skip
    return found


def run(work: Path, events: int, requests: int, ingest_n: int, verify: bool) -> dict[str, Any]:
    up = start_up(work / "data")
    try:
        url, admin = up.url, up.admin
        if admin is None:
            raise BenchError("no first admin printed")
        token = httpx.post(f"{url}/auth/sign-in", json={"email": admin[0], "password": admin[1]}).json()["accessToken"]
        database_url = up.info()["database_url"]
        (vault,) = [s for s in DataDir.at(work / "data").event_signers() if s.producer == "vault"]
        seed_s = seed(database_url, events, vault)
        print(f"bench: seeded {events:,} events in {seed_s:.0f}s ({events / seed_s:,.0f}/s)", flush=True)
        measured = pages(url, token, database_url, events, requests)
        ingested = ingest(database_url, ingest_n)
        began, code = time.monotonic(), None
        if verify:
            code = subprocess.run(
                [sys.executable, "-m", "ops", "audit", "verify", "--data-dir", str(work / "data")],
                cwd=ROOT, capture_output=True, text=True, check=False,
            ).returncode  # fmt: skip
        verify_s = time.monotonic() - began
        print(f"bench: verify exit {code} in {verify_s:.0f}s", flush=True)
    finally:
        up.stop()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "events": events,
        "seed_s": round(seed_s, 1),
        "pages": measured,
        "ingest": ingested,
        "verify": {"exit": code, "seconds": round(verify_s, 1)},
        "goals": {
            "page_p50_ms_max": GOAL_P50_MS,
            "pages_met": all(p["gateway"]["p50_ms"] <= GOAL_P50_MS for p in measured.values()),
            "ingest_per_s_min": GOAL_INGEST,
            "ingest_met": ingested["events_per_s"] >= GOAL_INGEST,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--ingest", type=int, default=20_000)
    parser.add_argument("--no-verify", action="store_true", help="skip timing `clientvault audit verify`")
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-audit-"))
    try:
        results = run(work, args.events, args.requests, args.ingest, not args.no_verify)
    except BenchError as error:
        print(f"bench: failed: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["goals"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
