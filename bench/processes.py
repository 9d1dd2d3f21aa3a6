"""Servers under test, each in its own operating-system process.

A benchmark that runs the server in the load generator's process measures both fighting over
one interpreter. Every target here is a child process on a free 127.0.0.1 port, started
before its phase and stopped after it, so each phase has the machine to itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A child process serving HTTP on `port`, with its output kept in `log`."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, grace: float = 10.0) -> None:
        """Ask the process to stop (SIGINT, which aiohttp and uvicorn handle), then insist."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self, *, main_thread: bool = False) -> float:
        """User plus system CPU time the server has used so far: all its threads and its
        child processes (the gateway's signature workers), or only its main thread (the
        event loop's, in every server here) (Linux /proc)."""
        pid = self.process.pid
        if main_thread:
            return _cpu_seconds(f"/proc/{pid}/task/{pid}/stat")
        total = _cpu_seconds(f"/proc/{pid}/stat", with_reaped_children=True)
        for child in _children(pid):
            used = _cpu_seconds(f"/proc/{child}/stat", with_reaped_children=True)
            if used == used:  # not NaN: a child may end between the listing and the read
                total += used
        return total

    def tail(self, lines: int = 20) -> str:
        """The end of the server's output, for an error message that says why it died."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _cpu_seconds(stat: str, *, with_reaped_children: bool = False) -> float:
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: children waited for
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The live child processes of `pid`, from every one of its threads."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for thread in threads:
        try:
            found.extend(
                int(child)
                for child in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()
            )
        except OSError:
            continue
    return found


def start(
    name: str,
    args: Sequence[str],
    *,
    port: int,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Server:
    """Start `python <args>` from the repository root with its output in a log file."""
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    return Server(name, process, port, log)


async def wait_ready(
    server: Server, session: aiohttp.ClientSession, path: str, limit_s: float = 30.0
) -> None:
    """Poll `path` until it answers 200; fail with the server's output if it dies or stalls."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited during start:\n{server.tail()}")
        try:
            async with session.get(server.url + path) as response:
                await response.read()
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} was not ready after {limit_s:.0f} s:\n{server.tail()}")
