"""`switchboard serve` with a bad setting, run as a real subprocess: it stops at once with
exit status 2 and one line on stderr naming the setting and the problem, never a traceback.

Unreachable servers are closed ports on 127.0.0.1, which refuse at once.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.cli.serve import _bind
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound for a moment, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(
    data_dir: Path, *args: str, timeout: float = 30, **settings: str
) -> subprocess.CompletedProcess[str]:
    """Run `switchboard serve` with only the given SWITCHBOARD_* settings (on a free port)."""
    return switchboard("serve", *args, data_dir=data_dir, timeout=timeout, **settings)


def switchboard(
    *args: str, data_dir: Path, timeout: float = 30, **settings: str
) -> subprocess.CompletedProcess[str]:
    """Run a `switchboard` command with only the given SWITCHBOARD_* settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SWITCHBOARD_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SWITCHBOARD_PORT": str(closed_port()),
        "SWITCHBOARD_VERIFY_WORKERS": "0",
    }
    env |= {f"SWITCHBOARD_{name}": value for name, value in settings.items()}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
        check=False,
    )


def the_one_line(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 2 and exactly one line on stderr, which is returned."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("switchboard: error: ")
    return lines[0].removeprefix("switchboard: error: ")


@pytest.mark.parametrize("port", ["99999", "0", "-5", "http"])
def test_a_port_flag_out_of_range_is_a_usage_error(tmp_path: Path, port: str) -> None:
    """`serve --port 99999` is refused by the argument parser: exit 2, naming --port and the
    range (a port 0 was taken for "not given" and served on the default)."""
    result = serve(tmp_path / "data", "--port", port, timeout=10)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"switchboard serve: error: argument --port: expected a port from 1 to 65535, got {port!r}"
    )
    assert not (tmp_path / "data").exists()


def test_a_data_dir_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    """A data folder under a file: SWITCHBOARD_DATA_DIR cannot be created, and why."""
    (tmp_path / "a-file").write_text("")
    folder = tmp_path / "a-file" / "var"
    line = the_one_line(serve(folder))
    assert line == f"SWITCHBOARD_DATA_DIR: cannot create or use {folder}: Not a directory"


def test_an_unreachable_database_is_named_and_nothing_is_made(tmp_path: Path) -> None:
    """A database URL nobody answers on: SWITCHBOARD_DATABASE_URL cannot connect, and why;
    neither the admin token nor the gateway key was made for a gateway that never ran."""
    port = closed_port()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test"
    line = the_one_line(serve(tmp_path / "data", DATABASE_URL=url))
    assert line.startswith(f"SWITCHBOARD_DATABASE_URL: cannot connect to 127.0.0.1:{port}: ")
    assert "Connect call failed" in line
    assert not (tmp_path / "data" / "admin_token").exists()
    assert not (tmp_path / "data" / "gateway_key.jwk").exists()


def test_db_upgrade_names_an_unreachable_database_or_data_dir(tmp_path: Path) -> None:
    """`switchboard db upgrade` stops on the same bad settings with the same one line."""
    port = closed_port()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test"
    line = the_one_line(switchboard("db", "upgrade", data_dir=tmp_path, DATABASE_URL=url))
    assert line.startswith(f"SWITCHBOARD_DATABASE_URL: cannot connect to 127.0.0.1:{port}: ")
    (tmp_path / "a-file").write_text("")
    line = the_one_line(switchboard("db", "upgrade", data_dir=tmp_path / "a-file" / "var"))
    assert line.startswith("SWITCHBOARD_DATA_DIR: cannot create or use ")


def test_an_unreachable_nats_is_named_after_its_connect_timeout(tmp_path: Path) -> None:
    """A NATS URL nobody answers on: one line naming SWITCHBOARD_NATS_URL and the last error,
    once SWITCHBOARD_NATS_CONNECT_TIMEOUT has passed (no traceback, no retry warnings)."""
    port = closed_port()
    result = serve(tmp_path / "data", NATS_URL=f"nats://127.0.0.1:{port}", NATS_CONNECT_TIMEOUT="1")
    line = the_one_line(result)
    assert line.startswith(f"SWITCHBOARD_NATS_URL: cannot connect to 127.0.0.1:{port} in 1 s: ")
    assert "Connect call failed" in line
    assert not (tmp_path / "data" / "admin_token").exists()


def test_a_port_in_use_cannot_be_listened_on_before_anything_starts(tmp_path: Path) -> None:
    """A port another socket listens on: the one line says so, and the gateway made nothing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = the_one_line(serve(tmp_path / "data", PORT=str(port)))
    assert line == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert not (tmp_path / "data").exists()


def test_a_host_that_does_not_resolve_cannot_be_listened_on(tmp_path: Path) -> None:
    """SWITCHBOARD_HOST naming no address: the listen step's one line, with the resolver's
    reason."""
    port = closed_port()
    line = the_one_line(serve(tmp_path / "data", HOST="nowhere.invalid", PORT=str(port)))
    assert line.startswith(f"cannot listen on nowhere.invalid:{port}: ")
    assert not (tmp_path / "data").exists()


def test_a_nats_without_jetstream_is_named(tmp_path: Path) -> None:
    """A NATS server started without JetStream answers, but cannot hold the work stream: one
    line naming SWITCHBOARD_NATS_URL and saying JetStream is needed (it was a traceback)."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = closed_port()
    try:
        server = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        unavailable("nats-server (to run one without JetStream)", exc)
    try:
        for _ in range(100):  # until it listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        line = the_one_line(serve(tmp_path / "data", NATS_URL=f"nats://127.0.0.1:{port}"))
    finally:
        server.terminate()
        server.wait(10)
    assert line.startswith(f"SWITCHBOARD_NATS_URL: 127.0.0.1:{port} made no JetStream stream")
    assert line.endswith("start nats-server with -js")
    assert not (tmp_path / "data" / "admin_token").exists()


def test_the_port_is_claimed_before_the_gateway_starts_up() -> None:
    """Two `serve`s starting at once on one port can both bind it (SO_REUSEADDR); the first
    to listen has it. `serve` listens as it binds, before its start-up, so the other one
    finds the port taken then (it was found after a whole start-up, as a traceback)."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", 0))
        port = other.getsockname()[1]
        sockets = _bind("127.0.0.1", port)  # binds beside the other, and listens
        try:
            with pytest.raises(OSError) as taken:
                other.listen()
            assert taken.value.errno == errno.EADDRINUSE
        finally:
            for sock in sockets:
                sock.close()
