"""The fork server of `clientvault up`: one process that imports the code of every ClientVault process once, then
forks a child for each process `up` asks for, which runs `clientvault serve <name>` from there.

Why: a Python process pays 2-3 s of CPU importing its modules (SQLAlchemy, gRPC, pydantic, FastAPI, ...) before
it does anything; five of them on two cores were most of `up`'s start. Imported once and forked, they cost that
once, and the children share those pages until they write them.

What each child gets, as when it was exec'd: its own session (a terminal's Ctrl-C reaches `up` only), the stop
signal `up` sends it as its parent-death signal, its log file as stdout and stderr, and its environment. The
environment comes through a pipe of its own, read by the child after the fork: the fork server never reads
a child's secrets, so no child can find another's in memory it inherited. The fork server itself runs with every
secret blanked (ops/registry.py, SECRET_HOLDERS), which is also what `/proc/<pid>/environ` shows of a child.

Nothing here starts a thread, a loop, a pool or a channel before a fork: the imports only (gRPC, psycopg and
asyncio are safe to fork then; each child makes its own after).

The protocol, over a SOCK_SEQPACKET socket pair (one message each):
    up -> server  b"spawn <name> <stop signal>" with two descriptors: the pipe with the environment (JSON), the log
    server -> up  b"ready" (imports done), b"pid <pid>" (the answer to a spawn), b"exit <pid> <code>" (a child
                  ended: the server is its parent and reaps it; code as asyncio's, -N for signal N)
The server exits when `up` closes its end.
"""

import asyncio
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15
MAX_MESSAGE = 4096


def preload() -> None:
    """Imports what every process runs: the registry's modules and the `serve` command."""
    from ops import cli, registry

    del cli
    for process in registry.PROCESSES:
        importlib.import_module(process.module)


def _child(name: str, stop_signal: int, environment_fd: int, log_fd: int, parent: int) -> int:
    """In the child: become the process `name` (never returns to the server's loop)."""
    import ctypes

    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, stop_signal)
    libc.prctl(PR_SET_NAME, f"cv-{name}".encode()[:15])  # what `top` and `ps -o comm` show, not the fork server's
    if os.getppid() != parent:  # the server died before the prctl: nobody would stop this child
        return 1
    with os.fdopen(environment_fd, "rb") as pipe:
        environment = json.loads(pipe.read())
    os.environ.clear()
    os.environ.update(environment)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    from ops.cli import app

    try:
        app(["serve", name], prog_name="clientvault")
    except SystemExit as exited:
        return exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
    return 0


def _fork(channel: socket.socket, pidfds: dict[int, int], message: bytes, fds: list[int]) -> int:
    _, name, stop_signal = message.decode().split()
    environment_fd, log_fd = fds
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            channel.close()
            for pidfd in pidfds:
                os.close(pidfd)
            code = _child(name, int(stop_signal), environment_fd, log_fd, parent)
        except BaseException:  # noqa: BLE001 - whatever happens, the child must not return into the server's loop
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(environment_fd)
    os.close(log_fd)
    pidfds[os.pidfd_open(pid)] = pid
    return pid


def serve(channel: socket.socket) -> None:
    preload()
    channel.send(b"ready")
    pidfds: dict[int, int] = {}  # a pidfd (readable once its process ended) -> the pid
    while True:
        readable, _, _ = select.select([channel.fileno(), *pidfds], [], [])
        for ready in readable:
            if ready == channel.fileno():
                message, fds, _, _ = socket.recv_fds(channel, MAX_MESSAGE, 2)
                if not message:  # `up` is gone or done with us
                    return
                channel.send(f"pid {_fork(channel, pidfds, message, fds)}".encode())
            else:
                pid = pidfds.pop(ready)
                os.close(ready)
                _, status = os.waitpid(pid, 0)
                channel.send(f"exit {pid} {os.waitstatus_to_exitcode(status)}".encode())


class Forked:
    """A child of the fork server as `up`'s supervisor sees it: the part of asyncio.subprocess.Process it uses."""

    def __init__(self, pid: int, ended: "asyncio.Future[int]") -> None:
        self.pid = pid
        self._ended = ended

    @property
    def returncode(self) -> int | None:
        return self._ended.result() if self._ended.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not reaped yet, so the pid is still this child's
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServerGone(RuntimeError):
    pass


class ForkServer:
    """`up`'s end: starts the server (again, after it ended) on the first spawn, and turns its messages into
    `Forked` children. `start_process(fd)` starts `python -m ops.forkserver <fd>` as `up` starts any child."""

    ORPHAN_GRACE_S = 5.0

    def __init__(self, start_process: Callable[[int], Awaitable[asyncio.subprocess.Process]]) -> None:
        self._start_process = start_process
        self._lock = asyncio.Lock()
        self._channel: socket.socket | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._pids: asyncio.Queue[Forked | None] = asyncio.Queue()
        self._ended: dict[int, asyncio.Future[int]] = {}

    async def start(self) -> None:
        """Starts the server if it is not running; returns at once (its imports go on meanwhile)."""
        if self._channel is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = await self._start_process(theirs.fileno())
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channel = ours
        self._ready = asyncio.get_running_loop().create_future()
        self._pids = asyncio.Queue()  # this server's answers only: none of an earlier one's is taken for its
        self._reader = asyncio.create_task(self._read(ours, self._ready, self._pids))

    async def spawn(self, name: str, environment: Mapping[str, str], log: IO[bytes], stop_signal: int) -> Forked:
        async with self._lock:  # one spawn at a time: the answers come in order
            await self.start()
            assert self._channel is not None
            assert self._ready is not None
            pids = self._pids
            await asyncio.shield(self._ready)
            read_end, write_end = os.pipe()
            try:
                socket.send_fds(self._channel, [f"spawn {name} {int(stop_signal)}".encode()], [read_end, log.fileno()])
            except OSError as error:  # it ended, and the reader has not seen it yet
                os.close(write_end)
                raise ForkServerGone(f"the fork server ended before it started {name}") from error
            finally:
                os.close(read_end)
            await asyncio.to_thread(_write_and_close, write_end, json.dumps(dict(environment)).encode())
            forked = await pids.get()
        if forked is None:
            raise ForkServerGone(f"the fork server ended before it started {name}")
        return forked

    async def _read(
        self, channel: socket.socket, ready: "asyncio.Future[None]", pids: "asyncio.Queue[Forked | None]"
    ) -> None:
        loop = asyncio.get_running_loop()
        while message := await loop.sock_recv(channel, MAX_MESSAGE):
            kind, *values = message.decode().split()
            if kind == "ready":
                ready.set_result(None)
            elif kind == "pid":
                pid = int(values[0])
                self._ended[pid] = loop.create_future()
                pids.put_nowait(Forked(pid, self._ended[pid]))
            elif kind == "exit" and (ended := self._ended.pop(int(values[0]), None)) is not None:
                ended.set_result(int(values[1]))
        # The server ended: the kernel sent each child its stop signal (parent death); once they are gone, their
        # watchers restart them through a new server.
        channel.close()
        self._channel = None
        if not ready.done():
            ready.set_exception(ForkServerGone("the fork server ended while it imported (see its log)"))
        pids.put_nowait(None)  # to a spawn waiting for this server's answer, if any
        orphans, self._ended = self._ended, {}
        await asyncio.gather(*(_until_gone(pid, self.ORPHAN_GRACE_S) for pid in orphans))
        for ended in orphans.values():
            ended.set_result(-signal.SIGKILL)

    async def stop(self, grace_s: float) -> None:
        """Ends the server (after its children: it exits when its channel closes)."""
        if self._channel is not None:
            self._channel.shutdown(socket.SHUT_WR)  # the server reads the end, and exits
        if self.process is not None and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()


def _write_and_close(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(data)


async def _until_gone(pid: int, grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < deadline + grace_s:
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
