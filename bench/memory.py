"""Benchmark memory under load: does any process of `clientvault up` grow across a long run? Seed: 100 credentials
under 10 clients and 32 managers (as reveal.py). Measure: a warm-up, then wrk for `--duration` seconds on a mix of
credential reveals and `GET /users/me` (half each, random), sampling each process's RSS every `--every` seconds.
Print: the samples, each process's RSS, PSS and anonymous memory at the start and the end of the run, and whether its
anonymous memory (heaps: what a leak grows) grew;
bench/results/memory.json.

Steps, options and the figures measured so far: bench/README.md (`memory.py`). Needs wrk.
Run from the project root: `uv run python bench/memory.py [--duration 60] [--every 5] [--keep-data]`.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    MEMORY_FIELDS,
    machine,
    memory_snapshot,
    parse_wrk,
    run_main,
    start_up,
)  # run as a script, bench/ is on the path
from reveal import RELAXED, credentials, lua, managers

WARMUP_S = 15  # pools, caches and the allocators' arenas fill first: growth after that is what counts
# A process grows when its anonymous memory (the median of its last three samples against the median of its first
# three) grew by both of these over the run, and by half as much over the run's second half: still growing at the
# end, not a step early on (a pool's new connection) after which it stays flat, nor one sample's passing worker
# (PostgreSQL's autovacuum, whose memory is its own backend's for a few seconds).
GROWTH_MIB, GROWTH_SHARE = 3.0, 0.05


def _growth(samples: list[float]) -> float:
    edge = min(3, len(samples) // 2) or 1
    return statistics.median(samples[-edge:]) - statistics.median(samples[:edge])


def grew(samples: list[float]) -> tuple[float, bool]:
    """The growth in MiB from the first samples to the last, and whether it counts as growing."""
    growth, late = _growth(samples), _growth(samples[len(samples) // 2 :])
    threshold = max(GROWTH_MIB, GROWTH_SHARE * samples[0])
    return round(growth, 1), growth > threshold and late > threshold / 2


def run(work: Path, duration: int, every: int, connections: int) -> dict[str, Any]:
    data_dir = work / "data"
    up = start_up(data_dir, RELAXED)
    try:
        paths = credentials(up)
        script = work / "mix.lua"
        script.write_text(lua(paths + ["/users/me"] * len(paths), {}, managers(up, up.url)))
        base = ["wrk", "-t2", f"-c{connections}", "--latency", "-s", str(script)]
        print(f"bench: warm-up, {WARMUP_S}s of the same load", flush=True)
        subprocess.run([*base, f"-d{WARMUP_S}s", up.url], check=True, capture_output=True, timeout=WARMUP_S + 30)
        print(f"bench: {' '.join(base)} -d{duration}s {up.url}  (RSS every {every}s)", flush=True)
        started = time.monotonic()
        samples: list[dict[str, Any]] = [{"t_s": 0.0, "mib": memory_snapshot(data_dir)}]
        with subprocess.Popen([*base, f"-d{duration}s", up.url], stdout=subprocess.PIPE, text=True) as load:
            for at in [*range(every, duration, every), duration - 0.5]:  # the last one just before wrk ends
                time.sleep(max(0.0, started + at - time.monotonic()))
                if load.poll() is not None:
                    break
                samples.append({"t_s": round(time.monotonic() - started, 1), "mib": memory_snapshot(data_dir)})
                each = ", ".join(f"{name} {mib['anonymous']:.0f}" for name, mib in samples[-1]["mib"].items())
                print(f"  {samples[-1]['t_s']:5.1f}s  anonymous MiB: {each}", flush=True)
            output, _ = load.communicate(timeout=30)
    finally:
        up.stop()
    wrk_load = parse_wrk(output)
    growth = {}
    for name in samples[0]["mib"]:
        series = {kind: [sample["mib"].get(name, {}).get(kind, 0.0) for sample in samples] for kind in MEMORY_FIELDS}
        mib, grows = grew(series["anonymous"])
        ends = {f"{kind}_mib": [values[0], values[-1]] for kind, values in series.items()}
        growth[name] = ends | {"anonymous_growth_mib": mib, "grows": grows}
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "wrk": {"connections": connections, "duration_s": duration, "warmup_s": WARMUP_S, "mix": "reveal + /users/me"},
        "requests": wrk_load.requests,
        "requests_per_s": wrk_load.requests_per_s,
        "non_2xx_3xx": wrk_load.non_2xx_3xx,
        "samples": samples,
        "growth": growth,
    }


def summary(results: dict[str, Any]) -> str:
    rows = [
        f"{results['requests']} requests in {results['wrk']['duration_s']}s ({results['requests_per_s']:.0f}/s, "
        f"{results['non_2xx_3xx']} not 2xx), memory sampled {len(results['samples'])} times",
        f"{'process':11} {'RSS MiB':>13} {'PSS MiB':>13} {'anonymous MiB':>14} {'growth':>7}  grows?",
    ]
    for name, g in sorted(results["growth"].items()):
        rss, pss, anon = (f"{g[k][0]:.0f}->{g[k][1]:.0f}" for k in ("rss_mib", "pss_mib", "anonymous_mib"))
        verdict = "GROWS" if g["grows"] else "no"
        rows.append(f"{name:11} {rss:>13} {pss:>13} {anon:>14} {g['anonymous_growth_mib']:+7.1f}  {verdict}")
    total = {k: sum(g[k][1] for g in results["growth"].values()) for k in ("rss_mib", "pss_mib")}
    rows.append(f"all processes at the end: RSS {total['rss_mib']:.0f} MiB, PSS {total['pss_mib']:.0f} MiB")
    growing = [name for name, g in results["growth"].items() if g["grows"]]
    rows.append(f"nothing grows: {'met' if not growing else 'MISSED (' + ', '.join(growing) + ')'}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=60, help="seconds of measured load (default 60)")
    parser.add_argument("--every", type=int, default=5, help="seconds between RSS samples (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and logs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-memory-"))
    return run_main(
        "memory",
        lambda: run(work, args.duration, args.every, args.connections),
        summary,
        remove=None if args.keep_data else work,
        kept=f"kept the data dir and logs in {work}",
    )


if __name__ == "__main__":
    sys.exit(main())
