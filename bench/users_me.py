"""Benchmark `GET /users/me` through the gateway against a bare FastAPI monolith, and time `clientvault up`.
Seed: the first admin `up` makes. Measure: `up` to ready on a new and an existing data dir, wrk on both apps.
Print: req/s, p50, p99, the ratio gateway/monolith, the `up` timings, and bench/results/users_me.json.

Steps, options, goals and the figures measured so far: bench/README.md (`users_me.py`). Needs wrk.
Run from the project root: `uv run python bench/users_me.py [--duration 15] [--connections 32] [--keep-data]`.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from harness import (
    GOAL_MARK,
    ROOT,
    WARMUP_S,
    BenchError,
    free_port,
    load_details,
    machine,
    run_main,
    sign_in,
    start_up,
    stop,
    wait_http,
    wrk,
)

GOAL_RATIO = 0.5
GOAL_UP_EXISTING_S = 5.0
PROFILED = ("gateway", "auth")


def summary(results: dict[str, Any]) -> str:
    gateway, monolith = results["gateway"], results["monolith"]
    ratio, up = results["ratio_req_per_s"], results["up"]
    ok = GOAL_MARK
    rows = [f"{'':10} {'req/s':>10} {'p50':>10} {'p99':>10} {'non-2xx':>8}"]
    for name, load in (("gateway", gateway), ("monolith", monolith)):
        rows.append(
            f"{name:10} {load['requests_per_s']:10.1f} {load['p50_ms']:7.2f} ms {load['p99_ms']:7.2f} ms"
            f" {load['non_2xx_3xx']:8}"
        )
    rows += [
        f"gateway/monolith req/s: {ratio:.2f}  (goal >= {GOAL_RATIO}: {ok[ratio >= GOAL_RATIO]})",
        f"up to ready, new data dir:      {up['new_s']:5.1f} s  (up itself says {up['new_reported_s']:.1f} s)",
        f"up to ready, existing data dir: {up['existing_s']:5.1f} s  (up itself says {up['existing_reported_s']:.1f} s)"
        f"  (goal <= {GOAL_UP_EXISTING_S:.0f} s: {ok[up['existing_s'] <= GOAL_UP_EXISTING_S]})",
    ]
    rows += load_details(gateway)
    return "\n".join(rows)


def run(work: Path, duration: int, connections: int, profile_s: int) -> dict[str, Any]:
    data_dir = work / "data"
    up = start_up(data_dir)
    up.stop()
    new_s, new_reported_s, admin = up.ready_s, up.reported_ready_s, up.admin
    if admin is None:
        raise BenchError("`up` on a new data dir did not print the first admin's email and password")
    print(f"bench: up was ready on a new data dir in {new_s:.1f}s; stopped it; starting it again", flush=True)

    up = start_up(data_dir)
    existing_s, existing_reported_s, url = up.ready_s, up.reported_ready_s, up.url
    monolith: subprocess.Popen[bytes] | None = None
    try:
        print(f"bench: up was ready on the existing data dir in {existing_s:.1f}s", flush=True)
        token = sign_in(url, *admin)
        me = httpx.get(f"{url}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        me.raise_for_status()
        gateway = wrk(
            "gateway", f"{url}/users/me", token, duration, connections,
            cpu_of=data_dir, profile=PROFILED, profile_s=profile_s,
        )  # fmt: skip

        port, log = free_port(), work / "monolith.log"
        argv = [sys.executable, str(ROOT / "bench" / "monolith.py"), "--port", str(port), "--user-id", me.json()["id"]]
        env = {**os.environ, "DATABASE_URL": up.info()["database_url"]}
        with log.open("wb") as out:
            monolith = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        monolith_url = f"http://127.0.0.1:{port}/users/me"
        wait_http(monolith_url, monolith, log)
        same = httpx.get(monolith_url, timeout=10).json()
        if same != me.json():
            print(f"bench: note: the bodies differ:\n  gateway  {me.json()}\n  monolith {same}", flush=True)
        bare = wrk("monolith", monolith_url, None, duration, connections)
    finally:
        if monolith is not None:
            stop(monolith, "monolith")
        up.stop()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "wrk": {"threads": 2, "connections": connections, "duration_s": duration, "warmup_s": WARMUP_S},
        "up": {
            "new_s": round(new_s, 2),
            "new_reported_s": new_reported_s,
            "existing_s": round(existing_s, 2),
            "existing_reported_s": existing_reported_s,
        },
        "gateway": asdict(gateway),
        "monolith": asdict(bare),
        "ratio_req_per_s": round(gateway.requests_per_s / bare.requests_per_s, 3),
        "goals": {"ratio_min": GOAL_RATIO, "up_existing_max_s": GOAL_UP_EXISTING_S},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per target (default 15)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and logs")
    parser.add_argument(
        "--profile-s", type=int, default=8, help="seconds of a further load under py-spy (default 8; 0: none)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-"))
    return run_main(
        "users_me",
        lambda: run(work, args.duration, args.connections, args.profile_s),
        summary,
        remove=None if args.keep_data else work,
        kept=f"kept the data dir and logs in {work}",
    )


if __name__ == "__main__":
    sys.exit(main())
