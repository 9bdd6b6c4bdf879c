"""What the benchmark scripts share: `clientvault up` as a child (through the tests' launcher,
tests/system.py), accounts, stopping processes, wrk, CPU accounting.

Not a script; `users_me.py` and `clients.py` import it (`python bench/<script>.py` puts bench/ on sys.path).
"""

import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from clientvault.db import Database
from tests.system import EMBEDDED, Account, create_account
from tests.system import ROOT as ROOT  # the scripts take these three from here
from tests.system import System as System
from tests.system import free_port as free_port

RESULTS_DIR = ROOT / "bench" / "results"
STOP_GRACE_S = 15.0
WARMUP_S = 2  # a short wrk run before each measured one: pools and channels open, caches fill
GOAL_MARK = {True: "met", False: "MISSED"}


class BenchError(Exception):
    pass


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def stop(process: subprocess.Popen[Any], name: str, extra_pids: tuple[int, ...] = ()) -> None:
    """SIGTERM, then SIGKILL after a grace period (to the process and to `extra_pids`, its real worker)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            print(f"bench: {name} (pid {process.pid}) did not stop in {STOP_GRACE_S:.0f}s; killing it", flush=True)
    for pid in (*extra_pids, process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def start_up(data_dir: Path, env: Mapping[str, str] | None = None) -> System:
    """`clientvault up` on a data dir with its own embedded PostgreSQL and nats-server, its output echoed, ready.

    The launcher is the tests' (tests/system.py): one copy of starting, waiting for `ready` and stopping `up`."""
    up = System(data_dir, env={**EMBEDDED, **(env or {})}, echo=True)
    try:
        up.start()
    except RuntimeError as error:
        raise BenchError(str(error)) from None
    return up


def new_accounts(up: System, role: str, count: int, prefix: str) -> list[Account]:
    """`count` accounts made in-process in the system's database (the auth service's own code, argon2id)."""

    async def make() -> list[Account]:
        db = Database(up.info()["database_url"], pool_size=2)
        try:
            made = [Account(f"{prefix}{n}@bench.example.com", secrets.token_urlsafe(16), role) for n in range(count)]
            for account in made:
                await create_account(db, account)
            return made
        finally:
            await db.dispose()

    return asyncio.run(make())


def sign_in(url: str, email: str, password: str) -> str:
    """An access token for the user."""
    signed_in = httpx.post(f"{url}/auth/sign-in", json={"email": email, "password": password}, timeout=10)
    signed_in.raise_for_status()
    return str(signed_in.json()["accessToken"])


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx_3xx: int
    socket_errors: str
    cpu_s: dict[str, float] | None = None  # CPU seconds per process during the measured run, when asked for
    rss_mib: dict[str, dict[str, float]] | None = None  # each process's RSS before the warm-up and after the run
    profile: dict[str, Any] | None = None  # py-spy's top frames of the processes profiled (a run of its own)


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * UNITS_MS[unit]


def wrk_missing() -> bool:
    """True, having said how to install it, when wrk is not on the PATH (a script then exits with 2)."""
    if shutil.which("wrk") is not None:
        return False
    print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
    return True


def parse_wrk(output: str) -> Load:
    def find(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"could not find {pattern!r} in wrk's output:\n{output}")
        return match[1]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.+)$", output, re.MULTILINE)
    return Load(
        requests_per_s=float(find(r"^Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(find(r"^\s+50%\s+(\S+)")),
        p99_ms=_ms(find(r"^\s+99%\s+(\S+)")),
        requests=int(find(r"^\s+(\d+) requests in")),
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=errors[1] if errors else "none",
    )


def wrk(
    name: str,
    url: str,
    token: str | None,
    duration: int,
    connections: int,
    *,
    timeout_s: int | None = None,
    allow_errors: bool = False,
    cpu_of: Path | None = None,
    script: Path | None = None,
    profile: tuple[str, ...] = (),
    profile_s: int = 0,
) -> Load:
    """`wrk -t2 -c<connections> --latency` (a process of its own, bounded in time) for `duration` seconds after a
    WARMUP_S one; `script`: a Lua script that makes the requests.

    A non-2xx response fails the run unless `allow_errors` (then it is only reported). `timeout_s` replaces wrk's
    own 2 s, past which a request counts as a socket timeout and not in the latencies. With `cpu_of` (the data
    dir of `up`), the CPU time that each of its processes and wrk spent during the measured run is in `cpu_s`,
    and each process's RSS before the warm-up and after the run in `rss_mib`. With `profile` (names of `up`'s
    processes) and `profile_s`, a further wrk run of `profile_s` seconds under `py-spy record` of those
    processes (so the sampler's own CPU does not count in the measured run): their top frames in `profile`.
    """
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    limit = [f"--timeout={timeout_s}s"] if timeout_s else []
    lua = ["-s", str(script)] if script else []
    base = ["wrk", "-t2", f"-c{connections}", "--latency", *limit, *lua, *header]
    grace = 30 + (timeout_s or 2)
    rss_before = rss_snapshot(cpu_of) if cpu_of else {}
    subprocess.run([*base, f"-d{WARMUP_S}s", url], check=True, capture_output=True, timeout=WARMUP_S + grace)
    shown = " ".join(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", *limit, *lua, url])
    print(f"bench: {shown}  ({name})", flush=True)
    before = cpu_snapshot(cpu_of) if cpu_of else {}
    done = subprocess.run(
        [*base, f"-d{duration}s", url], check=True, capture_output=True, text=True, timeout=duration + grace
    )
    print("\n".join(f"  {line}" for line in done.stdout.splitlines()), flush=True)
    load = parse_wrk(done.stdout)
    if cpu_of:
        load.cpu_s = cpu_delta(before, cpu_snapshot(cpu_of), "wrk")
        rss_after = rss_snapshot(cpu_of)
        load.rss_mib = {
            process: {"before": rss_before.get(process, 0.0), "after": mib} for process, mib in rss_after.items()
        }
        print(cpu_line(load.cpu_s, load.requests, duration), flush=True)
        print(rss_line(load.rss_mib), flush=True)
    if load.non_2xx_3xx and not allow_errors:
        raise BenchError(f"{name}: {load.non_2xx_3xx} responses were not 2xx or 3xx")
    if cpu_of and profile and profile_s > 0:
        pids = {process: pid for process, pid in up_pids(cpu_of).items() if process in profile}
        slug = re.sub(r"\W+", "-", name)
        with py_spy(pids, profile_s, cpu_of.parent / f"py-spy-{slug}") as profiled:
            subprocess.run([*base, f"-d{profile_s}s", url], capture_output=True, timeout=profile_s + grace, check=False)
        load.profile = profiled
        print(profile_lines(profiled), flush=True)
    return load


def load_details(load: Mapping[str, Any], duration_s: int | None = None) -> list[str]:
    """A measured load's CPU per request of each process, RSS before and after, and py-spy's top frames, as
    summary lines (from its results, `asdict(Load)`)."""
    lines = []
    if load.get("cpu_s"):
        seconds = duration_s or max(1, round(load["requests"] / max(load["requests_per_s"], 1)))
        lines.append(cpu_line(load["cpu_s"], load["requests"], seconds))
    if load.get("rss_mib"):
        lines.append(rss_line(load["rss_mib"]))
    if load.get("profile"):
        lines.append(profile_lines(load["profile"]))
    return lines


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _tree(pid: int, own: Callable[[int], float], skip: frozenset[int]) -> float:
    """`own` of a process plus that of its live descendants, except those in `skip` (each counted apart: the
    children of up's fork server are up's processes of their own)."""
    try:
        value = own(pid)
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except (OSError, IndexError, ValueError):
        return 0.0  # gone meanwhile
    return value + sum(_tree(child, own, skip) for child in children if child not in skip)


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and of the children it has reaped (cutime)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields from 3 (state) on
    utime, stime, cutime, cstime = (int(field) for field in stat[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def _kib(path: str, field: str) -> float:
    found = re.search(rf"^{field}:\s+(\d+) kB", Path(path).read_text(), re.MULTILINE)
    return int(found[1]) if found else 0.0


def tree_cpu_s(pid: int, skip: frozenset[int] = frozenset()) -> float:
    """CPU seconds of a process and its descendants: the live ones, and the ones it has reaped (cutime)."""
    return _tree(pid, _cpu_s, skip)


def tree_rss_mib(pid: int, skip: frozenset[int] = frozenset()) -> float:
    """Resident memory of a process and its live descendants, in MiB (VmRSS of /proc/<pid>/status)."""
    return _tree(pid, lambda each: _kib(f"/proc/{each}/status", "VmRSS") / 1024, skip)


def up_pids(data_dir: Path) -> dict[str, int]:
    """The pid of each process `up` runs (<data-dir>/run/<name>.pid)."""
    pids = {}
    for pid_file in sorted((data_dir / "run").glob("*.pid")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids[pid_file.stem] = int(pid_file.read_text().split()[0])
    return pids


def rss_snapshot(data_dir: Path) -> dict[str, float]:
    """RSS in MiB of each process `up` runs (with its children: PostgreSQL's backends count with PostgreSQL)."""
    pids = up_pids(data_dir)
    return {name: round(tree_rss_mib(pid, frozenset(pids.values())), 1) for name, pid in pids.items()}


MEMORY_FIELDS = {"rss": "Rss", "pss": "Pss", "anonymous": "Anonymous"}


def memory_snapshot(data_dir: Path) -> dict[str, dict[str, float]]:
    """Of each process `up` runs (with its children), in MiB from /proc/<pid>/smaps_rollup: RSS; PSS (each shared
    page divided among the processes that map it: the pages a fork shares with the fork server, PostgreSQL's
    shared buffers); anonymous memory (heaps and stacks, not files or PostgreSQL's shared buffers: what a leak
    grows)."""
    pids = up_pids(data_dir)
    skip = frozenset(pids.values())

    def of(pid: int, field: str) -> float:
        return round(_tree(pid, lambda each: _kib(f"/proc/{each}/smaps_rollup", field) / 1024, skip), 1)

    return {name: {kind: of(pid, fields) for kind, fields in MEMORY_FIELDS.items()} for name, pid in pids.items()}


def cpu_line(cpu_s: dict[str, float], done: int, duration_s: int, cpus: int | None = None) -> str:
    """CPU milliseconds per request (or transaction) by process, and how busy the machine was."""
    if not done:
        return "      CPU ms per request: no request completed"
    cpus = cpus or os.cpu_count() or 1
    per_request = ", ".join(
        f"{name} {seconds * 1000 / max(done, 1):.2f}" for name, seconds in sorted(cpu_s.items(), key=lambda i: -i[1])
    )
    busy = sum(cpu_s.values()) / (cpus * duration_s)
    return f"      CPU ms per request: {per_request}  (all {cpus} CPUs {busy:.0%} busy)"


def rss_line(rss_mib: dict[str, dict[str, float]]) -> str:
    each = ", ".join(f"{name} {mib['before']:.0f}->{mib['after']:.0f}" for name, mib in sorted(rss_mib.items()))
    return f"      RSS MiB before->after: {each}"


PY_SPY = Path(sys.executable).parent / "py-spy"
TOP_FRAMES = 12
FRAME_LINE = re.compile(r":\d+\)$")  # "get_user (services/auth/store.py:118)": the function, not the line


@contextlib.contextmanager
def py_spy(pids: Mapping[str, int], seconds: int, prefix: Path) -> Iterator[dict[str, Any]]:
    """`py-spy record` of each process for `seconds` while the body runs (the load); yields what it found, filled
    in when the body is done: per process the samples and the top frames by own time (where the CPU is spent)
    and by total time (what it is spent for), or why py-spy could not sample it."""
    found: dict[str, Any] = {}
    if not PY_SPY.exists():
        found |= {name: {"error": f"py-spy is not installed ({PY_SPY})"} for name in pids}
        yield found
        return
    running = {}
    for name, pid in pids.items():
        out = Path(f"{prefix}-{name}.txt")
        argv = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
                "--format", "raw", "--nonblocking", "--output", str(out)]  # fmt: skip
        running[name] = (subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out)
    try:
        yield found
    finally:
        for name, (process, out) in running.items():
            try:
                said, _ = process.communicate(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                stop(process, f"py-spy of {name}")
                said = "py-spy did not finish"
            if process.returncode != 0 or not out.exists():
                found[name] = {"error": f"py-spy could not sample {name}: {said.strip()[-300:]}"}
            else:
                found[name] = top_frames(out.read_text())


def top_frames(collapsed: str, top: int = TOP_FRAMES) -> dict[str, Any]:
    """From py-spy's raw (collapsed) stacks: the share of samples in which each function ran itself ("own") and in
    which it was on the stack ("total"), the largest first (a function's lines counted together)."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), [FRAME_LINE.sub(")", frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count

    def largest(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [(frame, round(100 * count / max(samples, 1), 1)) for frame, count in ranked]

    return {"samples": samples, "own": largest(own), "total": largest(total)}


def profile_lines(profiled: dict[str, Any]) -> str:
    lines = []
    for name, found in profiled.items():
        if "error" in found:
            lines.append(f"      py-spy {name}: {found['error']}")
            continue
        lines.append(f"      py-spy {name}: {found['samples']} samples (100/s while not idle); top frames by own time:")
        lines += [f"        {share:5.1f}%  {frame}" for frame, share in found["own"]]
    return "\n".join(lines)


def cpu_snapshot(data_dir: Path) -> dict[str, float]:
    """CPU seconds so far of each process `up` runs (from <data-dir>/run/<name>.pid, with its children), of this
    script ("bench"), of the children it has waited for ("children": wrk, pgbench), and of the whole machine."""
    pids = up_pids(data_dir)
    seconds = {name: tree_cpu_s(pid, frozenset(pids.values())) for name, pid in pids.items()}
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds["children"] = usage.ru_utime + usage.ru_stime
    usage = resource.getrusage(resource.RUSAGE_SELF)
    seconds["bench"] = usage.ru_utime + usage.ru_stime  # this script: its HTTP client and SQL connection
    seconds["machine"] = machine_busy_s()
    return seconds


def machine_busy_s() -> float:
    """CPU seconds that all CPUs together spent not idle since boot (/proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def cpu_delta(before: dict[str, float], after: dict[str, float], children: str) -> dict[str, float]:
    """CPU seconds spent between two snapshots by each process, the load generator named `children`, and by
    everything else on the machine ("others": another job on a shared machine shows here); idle ones left out."""
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    machine = spent.pop("machine")
    spent["others"] = machine - sum(spent.values())
    named = {children if name == "children" else name: round(seconds, 2) for name, seconds in spent.items()}
    return {name: seconds for name, seconds in named.items() if seconds >= 0.01}


def wait_http(url: str, process: subprocess.Popen[Any], log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"{url} did not answer 200 in {timeout_s:.0f}s; its output:\n{log.read_text()[-3000:]}")


@dataclass
class Latency:
    """Latencies of sequential requests, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> "Latency":
        if len(seconds) < 2:
            raise BenchError("need at least two samples for percentiles")
        cuts = statistics.quantiles([s * 1000 for s in seconds], n=100, method="inclusive")
        return cls(
            count=len(seconds),
            p50_ms=round(cuts[49], 3),
            p99_ms=round(cuts[98], 3),
            mean_ms=round(statistics.fmean(seconds) * 1000, 3),
            max_ms=round(max(seconds) * 1000, 3),
        )


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def write_results(name: str, results: dict[str, Any]) -> Path:
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def terminate_on_sigterm() -> None:
    """SIGTERM unwinds through the `finally` blocks that stop the servers, as Ctrl-C does."""

    def _terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)


def run_main(
    name: str,
    measure: Callable[[], dict[str, Any]],
    summary: Callable[[dict[str, Any]], str],
    *,
    remove: Path | None,
    kept: str,
    errors: tuple[type[Exception], ...] = (),
) -> int:
    """The shell of a benchmark's main(), once its arguments are checked: SIGTERM and Ctrl-C unwind through the
    `finally` blocks that stop the servers; at the end `remove` (the temporary work dir) is deleted, or else
    `kept` is said; the results go to bench/results/NAME.json and their summary to stdout. Returns the exit
    status: 0, 1 when the run failed (with BenchError, an HTTP or subprocess error, or one of `errors`), 130
    when interrupted."""
    failures: tuple[type[Exception], ...] = (BenchError, httpx.HTTPError, subprocess.SubprocessError, *errors)
    terminate_on_sigterm()
    try:
        results = measure()
    except failures as error:
        print(f"bench: failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        if remove is None:
            print(f"bench: {kept}", flush=True)
        else:
            shutil.rmtree(remove, ignore_errors=True)
    written = write_results(name, results)
    print(f"\n{summary(results)}\n\nbench: wrote {written.relative_to(ROOT)}", flush=True)
    return 0
