"""Where each millisecond of the two hot paths goes, quickly: one `up`, wrk on `GET /users/me`, then on reveals of 30
credentials by 32 managers (reveal limits off), each with the CPU ms per request of every process (and, with
`--profile-s`, py-spy's top frames of the gateway and the service). No anchor and no `up` timings: a loop to run
before and after a change, e.g. in another checkout of the commit before it with that checkout's own virtualenv
(`cd ../base && .venv/bin/python bench/hotpaths.py`), alternating, so both see the same load of a shared machine.
Print: req/s and CPU per request of both loads; bench/results/hotpaths.json.

Steps and the figures measured so far: bench/README.md ("Hot paths").
Run from the project root: `uv run python bench/hotpaths.py [--duration 5] [--profile-s 0] [--keep-data]`.
"""

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from harness import (  # bench/ is on the path
    BenchError,
    load_details,
    machine,
    run_main,
    sign_in,
    start_up,
    wrk,
    wrk_missing,
)
from reveal import lua, managers

CLIENTS, PER_CLIENT = 3, 10
UNLIMITED = {
    "CLIENTVAULT_REVEAL_USER_MAX": "1000000000",
    "CLIENTVAULT_REVEAL_IP_MAX": "1000000000",
    "CLIENTVAULT_TRUSTED_PROXIES": "127.0.0.1/32",  # each manager reveals from an IP of its own
}


def run(work: Path, duration: int, profile_s: int) -> dict[str, Any]:
    data_dir = work / "data"
    up = start_up(data_dir, UNLIMITED)
    try:
        if up.admin is None:
            raise BenchError("`up` did not print the first admin")
        url, token = up.url, sign_in(up.url, *up.admin)
        me = wrk("users/me", f"{url}/users/me", token, duration, 32,
                 cpu_of=data_dir, profile=("gateway", "auth"), profile_s=profile_s)  # fmt: skip
        paths = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            for c in range(CLIENTS):
                made = http.post("/clients", json={"name": f"Hot {c}"})
                made.raise_for_status()
                client_id = made.json()["id"]
                for n in range(PER_CLIENT):
                    body = {"label": f"Credential {n}", "username": f"user{n}", "secret": f"secret-{c}-{n}"}
                    created = http.post(f"/clients/{client_id}/credentials", json=body)
                    created.raise_for_status()
                    paths.append(f"/clients/{client_id}/credentials/{created.json()['id']}")
        script = work / "reveal.lua"
        script.write_text(lua(paths, {}, managers(up, url)))
        reveal = wrk("reveal", url, None, duration, 32, script=script,
                     cpu_of=data_dir, profile=("gateway", "vault"), profile_s=profile_s)  # fmt: skip
    finally:
        up.stop()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "duration_s": duration,
        "users_me": asdict(me),
        "reveal": asdict(reveal),
    }


def summary(results: dict[str, Any]) -> str:
    rows = []
    for name in ("users_me", "reveal"):
        load = results[name]
        rows.append(
            f"{name:9} {load['requests_per_s']:8.1f} req/s  p50 {load['p50_ms']:.2f} ms  p99 {load['p99_ms']:.2f} ms"
        )
        rows += load_details(load, results["duration_s"])
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per path (default 5)")
    parser.add_argument("--profile-s", type=int, default=0, help="seconds of a further load under py-spy (default 0)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir, logs and profiles")
    args = parser.parse_args()
    if wrk_missing():
        return 2
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-hot-"))
    kept = f"kept the data dir, logs and profiles in {work}"
    measure = lambda: run(work, args.duration, args.profile_s)  # noqa: E731
    return run_main("hotpaths", measure, summary, remove=None if args.keep_data else work, kept=kept)


if __name__ == "__main__":
    sys.exit(main())
