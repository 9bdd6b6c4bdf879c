"""What the benchmark scripts share: `clientvault up` as a child (this interpreter's, so no uv on PATH is
needed), free ports, stopping processes, wrk.

Not a script; `users_me.py` and `clients.py` import it (`python bench/<script>.py` puts bench/ on sys.path).
"""

import contextlib
import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
UP_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0
WARMUP_S = 2  # a short wrk run before each measured one: pools and channels open, caches fill
ADMIN_LINE = re.compile(r"created the first admin: email (\S+)\s+password (\S+)")
READY_LINE = re.compile(r"ready at (http://\S+) in ([\d.]+)s")
GOAL_MARK = {True: "met", False: "MISSED"}


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


class Up:
    """One `clientvault up`: its output is read by a thread, echoed, and matched against."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}  # embedded ones
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ops", "up", "--data-dir", str(data_dir), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            print(f"  | {line.rstrip()}", flush=True)
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self) -> tuple[float, float, str, tuple[str, str] | None]:
        """Seconds to `ready` (wall clock from spawn, and as `up` reports it), the URL, the new admin."""
        admin = None
        deadline = self.started + UP_TIMEOUT_S
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"`up` did not print ready in {UP_TIMEOUT_S:.0f}s") from None
            if line is None:
                raise BenchError(f"`up` exited with code {self.process.wait()} before it was ready")
            if found := ADMIN_LINE.search(line):
                admin = (found[1], found[2])
            if found := READY_LINE.search(line):
                return time.monotonic() - self.started, float(found[2]), found[1], admin

    def system(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "run" / "system.json").read_text())  # type: ignore[no-any-return]

    def stop(self) -> None:
        """`uv run` passes SIGTERM on to `up`; if it must be killed, `up` itself (its child) is killed too."""
        children: tuple[int, ...] = ()
        with contextlib.suppress(OSError):
            tasks = Path(f"/proc/{self.process.pid}/task").iterdir()
            children = tuple(int(pid) for task in tasks for pid in (task / "children").read_text().split())
        stop(self.process, "up", children)


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


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * UNITS_MS[unit]


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
) -> Load:
    """`wrk -t2 -c<connections> --latency` for `duration` seconds after a WARMUP_S one.

    A non-2xx response fails the run unless `allow_errors` (then it is only reported). `timeout_s` replaces wrk's
    own 2 s, past which a request counts as a socket timeout and not in the latencies. With `cpu_of` (the data
    dir of `up`), the CPU time that each of its processes and wrk spent during the measured run is in `cpu_s`.
    """
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    limit = [f"--timeout={timeout_s}s"] if timeout_s else []
    base = ["wrk", "-t2", f"-c{connections}", "--latency", *limit, *header]
    grace = 30 + (timeout_s or 2)
    subprocess.run([*base, f"-d{WARMUP_S}s", url], check=True, capture_output=True, timeout=WARMUP_S + grace)
    shown = " ".join(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", *limit, url])
    print(f"bench: {shown}  ({name})", flush=True)
    before = cpu_snapshot(cpu_of) if cpu_of else {}
    done = subprocess.run(
        [*base, f"-d{duration}s", url], check=True, capture_output=True, text=True, timeout=duration + grace
    )
    print("\n".join(f"  {line}" for line in done.stdout.splitlines()), flush=True)
    load = parse_wrk(done.stdout)
    if cpu_of:
        load.cpu_s = cpu_delta(before, cpu_snapshot(cpu_of), "wrk")
    if load.non_2xx_3xx and not allow_errors:
        raise BenchError(f"{name}: {load.non_2xx_3xx} responses were not 2xx or 3xx")
    return load


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its descendants: the live ones, and the ones it has reaped (cutime)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields from 3 (state) on
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except (OSError, IndexError, ValueError):
        return 0.0  # gone meanwhile
    utime, stime, cutime, cstime = (int(field) for field in stat[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS + sum(tree_cpu_s(child) for child in children)


def cpu_snapshot(data_dir: Path) -> dict[str, float]:
    """CPU seconds so far of each process `up` runs (from <data-dir>/run/<name>.pid, with its children), of this
    script ("bench"), of the children it has waited for ("children": wrk, pgbench), and of the whole machine."""
    seconds = {}
    for pid_file in sorted((data_dir / "run").glob("*.pid")):
        with contextlib.suppress(OSError, ValueError):
            seconds[pid_file.stem] = tree_cpu_s(int(pid_file.read_text().split()[0]))
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
