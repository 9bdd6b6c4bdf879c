"""Benchmark `GET /users/me` through the gateway against a bare FastAPI monolith, and time `clientvault up`.

1. `uv run clientvault up` on a new data dir: seconds until `ready`; stop it; start it again on the same
   data dir: seconds until `ready` on an existing data dir (goal <= 10 s).
2. Sign in as the first admin and run wrk against the gateway's `GET /users/me` (gateway -> auth over
   gRPC -> PostgreSQL).
3. Run bench/monolith.py (same stack, same uvicorn settings, same database and user row, no token check
   and no gRPC hop) and run the same wrk load against it.
4. Print req/s, p50, p99 and the ratio gateway/monolith req/s (goal >= 0.5); write bench/results/users_me.json.

Run from the project root: `uv run python bench/users_me.py [--duration 15] [--connections 32] [--keep-data]`.
Needs wrk (`apt-get install -y wrk`). Everything it starts listens on 127.0.0.1 and is stopped at the end.
"""

import argparse
import contextlib
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "users_me.json"
UP_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0
WARMUP_S = 2  # a short wrk run before each measured one: pools and channels open, caches fill
GOAL_RATIO = 0.5
GOAL_UP_EXISTING_S = 10.0
ADMIN_LINE = re.compile(r"created the first admin: email (\S+)\s+password (\S+)")
READY_LINE = re.compile(r"ready at (http://\S+) in ([\d.]+)s")


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    """One `uv run clientvault up`: its output is read by a thread, echoed, and matched against."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}  # embedded ones
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            ["uv", "run", "clientvault", "up", "--data-dir", str(data_dir), "--port", str(port)],
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


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx_3xx: int
    socket_errors: str


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


def wrk(name: str, url: str, token: str | None, duration: int, connections: int) -> Load:
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    base = ["wrk", "-t2", f"-c{connections}", "--latency", *header]
    subprocess.run([*base, f"-d{WARMUP_S}s", url], check=True, capture_output=True, timeout=WARMUP_S + 30)
    print(f"bench: wrk -t2 -c{connections} -d{duration}s --latency {url}  ({name})", flush=True)
    done = subprocess.run(
        [*base, f"-d{duration}s", url], check=True, capture_output=True, text=True, timeout=duration + 30
    )
    print("\n".join(f"  {line}" for line in done.stdout.splitlines()), flush=True)
    load = parse_wrk(done.stdout)
    if load.non_2xx_3xx:
        raise BenchError(f"{name}: {load.non_2xx_3xx} responses were not 2xx or 3xx")
    return load


def wait_http(url: str, process: subprocess.Popen[Any], log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"{url} did not answer 200 in {timeout_s:.0f}s; its output:\n{log.read_text()[-3000:]}")


def summary(results: dict[str, Any]) -> str:
    gateway, monolith = results["gateway"], results["monolith"]
    ratio, up = results["ratio_req_per_s"], results["up"]
    ok = {True: "met", False: "MISSED"}
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
    return "\n".join(rows)


def run(work: Path, duration: int, connections: int) -> dict[str, Any]:
    data_dir = work / "data"
    up = Up(data_dir, free_port())
    try:
        new_s, new_reported_s, _, admin = up.wait_ready()
    finally:
        up.stop()
    if admin is None:
        raise BenchError("`up` on a new data dir did not print the first admin's email and password")
    print(f"bench: up was ready on a new data dir in {new_s:.1f}s; stopped it; starting it again", flush=True)

    up = Up(data_dir, free_port())
    monolith: subprocess.Popen[bytes] | None = None
    try:
        existing_s, existing_reported_s, url, _ = up.wait_ready()
        print(f"bench: up was ready on the existing data dir in {existing_s:.1f}s", flush=True)
        signed_in = httpx.post(f"{url}/auth/sign-in", json={"email": admin[0], "password": admin[1]}, timeout=10)
        signed_in.raise_for_status()
        token = signed_in.json()["accessToken"]
        me = httpx.get(f"{url}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        me.raise_for_status()
        gateway = wrk("gateway", f"{url}/users/me", token, duration, connections)

        port, log = free_port(), work / "monolith.log"
        argv = [sys.executable, str(ROOT / "bench" / "monolith.py"), "--port", str(port), "--user-id", me.json()["id"]]
        env = {**os.environ, "DATABASE_URL": up.system()["database_url"]}
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
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
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


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks that stop the servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per target (default 15)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data dir and logs")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    work = Path(tempfile.mkdtemp(prefix="clientvault-bench-"))
    try:
        results = run(work, args.duration, args.connections)
    except (BenchError, httpx.HTTPError, subprocess.SubprocessError) as error:
        print(f"bench: failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep_data:
            print(f"bench: kept the data dir and logs in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{summary(results)}\n\nbench: wrote {RESULTS.relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
