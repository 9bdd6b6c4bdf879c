"""Benchmark audit ingest: events COPYed into `vault.outbox`, timed until the audit service has chained them all
(vault relay → JetStream → audit consumer), then `clientvault audit verify` over the chain.
Print: events/s per run, the relay's share, CPU per event of each process, and bench/results/ingest.json.

Steps, options and the figures measured so far: bench/README.md (`ingest.py`).
Run from the project root: `uv run python bench/ingest.py [--events 20000] [--runs 2] [--keep-data]`.
"""

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from harness import (  # run as a script, bench/ is on the path
    GOAL_MARK,
    ROOT,
    BenchError,
    cpu_delta,
    cpu_line,
    cpu_snapshot,
    machine,
    profile_lines,
    py_spy,
    run_main,
    start_up,
    up_pids,
)

from clientvault.events import ACTIONS

GOAL_INGEST = 5_000.0
INGEST_TIMEOUT_S = 300.0
PROFILED = ("vault", "audit")


def ingest(database_url: str, n: int, data_dir: Path | None = None) -> dict[str, Any]:
    """COPYs `n` events into vault.outbox in one transaction and times until audit.events holds them all, and
    separately until the relay has published them all; with `data_dir` (of `up`), the CPU each process spent."""
    user, client = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM audit.events").fetchone()[0]  # type: ignore[index]
        with conn.cursor().copy(
            "COPY vault.outbox (event_id, action, occurred_at, user_id, user_email, user_full_name, credential_id, "
            "credential_label, client_id, ip, user_agent, request_id) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row([uuid.uuid4(), ACTIONS[i % 4], now, user, "i@example.com", "Ingest", uuid.uuid4(),
                                "ingest", client, "10.0.0.2", "bench", "r"])  # fmt: skip
        cpu_before = cpu_snapshot(data_dir) if data_dir else {}
        conn.commit()
        started, published_s = time.monotonic(), None
        while True:
            stored = conn.execute("SELECT count(*) FROM audit.events").fetchone()[0] - before  # type: ignore[index]
            if published_s is None and conn.execute(
                "SELECT count(*) FROM vault.outbox WHERE sent_at IS NULL"
            ).fetchone() == (0,):  # fmt: skip
                published_s = time.monotonic() - started
            conn.commit()
            if stored >= n or time.monotonic() - started > INGEST_TIMEOUT_S:
                break
            time.sleep(0.05)
    took = time.monotonic() - started
    result: dict[str, Any] = {
        "events": n,
        "stored": stored,
        "seconds": round(took, 2),
        "events_per_s": round(stored / took),
        "relay_published_all_after_s": round(published_s or took, 2),  # outbox → JetStream alone
    }
    if data_dir:
        result["cpu_s"] = cpu_delta(cpu_before, cpu_snapshot(data_dir), "children")
    print(f"bench: ingest {result}", flush=True)
    return result


def verify(data_dir: Path) -> dict[str, Any]:
    """`clientvault audit verify` over the whole chain: its exit code (0: the chain holds) and time."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ops", "audit", "verify", "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    print(f"bench: audit verify exit {done.returncode}: {done.stdout.strip()[-300:]}", flush=True)
    return {"exit": done.returncode, "seconds": round(time.monotonic() - began, 1)}


def run(work: Path, events: int, runs: int, profile_s: int) -> dict[str, Any]:
    data_dir = work / "data"
    up = start_up(data_dir)
    profiled: dict[str, Any] = {}
    try:
        database_url = up.info()["database_url"]
        measured = [ingest(database_url, events, data_dir) for _ in range(runs)]
        if profile_s > 0:
            pids = {name: pid for name, pid in up_pids(data_dir).items() if name in PROFILED}
            with py_spy(pids, profile_s, work / "py-spy-ingest") as profiled:
                ingest(database_url, events)
        verified = verify(data_dir)
    finally:
        up.stop()
    if verified["exit"] != 0:
        raise BenchError(f"the chain does not verify after the ingest (exit {verified['exit']})")
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "runs": measured,
        "verify": verified,
        "profile": profiled,
        "goal_events_per_s_min": GOAL_INGEST,
    }


def summary(results: dict[str, Any]) -> str:
    rows = []
    for n, found in enumerate(results["runs"], 1):
        rate = found["events_per_s"]
        rows.append(
            f"run {n}: {found['stored']:,} of {found['events']:,} events chained in {found['seconds']:.2f} s: "
            f"{rate:,} events/s (goal >= {GOAL_INGEST:,.0f}: {GOAL_MARK[rate >= GOAL_INGEST]}); the relay had "
            f"published them all after {found['relay_published_all_after_s']:.2f} s"
        )
        rows.append(
            cpu_line(found["cpu_s"], found["stored"], max(1, round(found["seconds"]))).replace("request", "event")
        )
    verified = results["verify"]
    rows.append(f"audit verify: exit {verified['exit']} in {verified['seconds']:.1f} s (0: the chain holds)")
    if results["profile"]:
        rows.append(profile_lines(results["profile"]))
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events per run (default 20000)")
    parser.add_argument("--runs", type=int, default=2, help="runs on the same system (default 2)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and logs")
    parser.add_argument(
        "--profile-s", type=int, default=0, help="a further run with py-spy on the vault and audit for this long"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-ingest-"))
    return run_main(
        "ingest",
        lambda: run(work, args.events, args.runs, args.profile_s),
        summary,
        remove=None if args.keep_data else work,
        kept=f"kept the data dir and logs in {work}",
        errors=(psycopg.Error,),
    )


if __name__ == "__main__":
    sys.exit(main())
