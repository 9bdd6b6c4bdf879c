"""Benchmark `clientvault up` to ready: once on a new data dir, then `--runs` times on that existing data dir,
alternating with another checkout's code (`--anchor DIR`, e.g. the commit before a change) when given, so both
are measured in the same minutes of a shared machine.
Print: seconds from spawn to the `ready` line for each run, the CPU seconds all processes had spent by then (what a
loaded machine does not change much), their medians, and bench/results/up.json.

Steps, options and the figures measured so far: bench/README.md (`up.py`).
Run from the project root: `uv run python bench/up.py [--runs 3] [--anchor DIR] [--keep-data]`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import (  # bench/ is on the path
    GOAL_MARK,
    ROOT,
    BenchError,
    free_port,
    machine,
    run_main,
    stop,
    tree_cpu_s,
    up_pids,
)

from tests.system import EMBEDDED, READY_LINE, READY_TIMEOUT_S

GOAL_EXISTING_S = 5.0


def ready_s(checkout: Path, data_dir: Path, log: Path) -> tuple[float, dict[str, float]]:
    """Seconds from spawning `python -m ops up` (the checkout's code) to its `ready` line, and the CPU seconds `up`
    and each process it runs had spent by then (PostgreSQL with its backends); stops it again."""
    env = {name: value for name, value in {**os.environ, **EMBEDDED}.items() if value is not None}
    argv = [sys.executable, "-m", "ops", "up", "--data-dir", str(data_dir), "--port", str(free_port())]
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=checkout, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    ready = threading.Event()
    lines: list[str] = []

    def collect() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if READY_LINE.search(line):
                ready.set()

    threading.Thread(target=collect, daemon=True).start()
    try:
        if not ready.wait(READY_TIMEOUT_S):
            raise BenchError(f"up ({checkout}) was not ready in {READY_TIMEOUT_S:.0f}s:\n{''.join(lines[-30:])}")
        took = time.monotonic() - started
        pids = up_pids(data_dir) | {"up": process.pid}
        cpu_s = {name: round(tree_cpu_s(pid, frozenset(pids.values())), 2) for name, pid in pids.items()}
    finally:
        stop(process, "up")
        with log.open("a") as out:
            out.writelines(lines)
    print(f"bench: up ({checkout.name}) ready in {took:.2f}s, {sum(cpu_s.values()):.1f} s of CPU by then: "
          + ", ".join(f"{name} {seconds:.2f}" for name, seconds in sorted(cpu_s.items(), key=lambda i: -i[1])),
          flush=True)  # fmt: skip
    return took, cpu_s


def run(work: Path, runs: int, anchor: Path | None) -> dict[str, Any]:
    checkouts = {"this": ROOT} | ({"anchor": anchor} if anchor else {})
    found: dict[str, Any] = {}
    for name, checkout in checkouts.items():
        data_dir = work / f"data-{name}"
        new_s, _ = ready_s(checkout, data_dir, work / f"up-{name}.log")
        found[name] = {"checkout": str(checkout), "new_s": round(new_s, 2), "existing_s": [], "existing_cpu_s": []}
    for _ in range(runs):  # alternating, so both see the same load
        for name, checkout in checkouts.items():
            took, cpu_s = ready_s(checkout, work / f"data-{name}", work / f"up-{name}.log")
            found[name]["existing_s"].append(round(took, 2))
            found[name]["existing_cpu_s"].append(cpu_s)
    for figures in found.values():
        figures["existing_median_s"] = round(statistics.median(figures["existing_s"]), 2)
        figures["existing_median_cpu_s"] = round(
            statistics.median(sum(c.values()) for c in figures["existing_cpu_s"]), 1
        )
    return {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "runs": runs, "up": found}


def summary(results: dict[str, Any]) -> str:
    rows = []
    for name, figures in results["up"].items():
        existing = ", ".join(f"{s:.2f}" for s in figures["existing_s"])
        median = figures["existing_median_s"]
        goal = f"  (goal <= {GOAL_EXISTING_S:.0f} s: {GOAL_MARK[median <= GOAL_EXISTING_S]})" if name == "this" else ""
        cpu = figures["existing_median_cpu_s"]
        rows.append(f"{name:7} new data dir {figures['new_s']:.2f} s; existing data dir {existing} s, "
                    f"median {median:.2f} s{goal}; CPU spent by then, median {cpu:.1f} s")  # fmt: skip
    if "anchor" in results["up"]:
        ratio = results["up"]["this"]["existing_median_s"] / results["up"]["anchor"]["existing_median_s"]
        rows.append(f"this/anchor, existing data dir (median): {ratio:.2f}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="starts on the existing data dir (default 3)")
    parser.add_argument("--anchor", type=Path, help="another checkout whose `up` is timed alternately")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dirs and logs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-up-"))
    return run_main(
        "up",
        lambda: run(work, args.runs, args.anchor.resolve() if args.anchor else None),
        summary,
        remove=None if args.keep_data else work,
        kept=f"kept the data dirs and logs in {work}",
    )


if __name__ == "__main__":
    sys.exit(main())
