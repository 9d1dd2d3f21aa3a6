"""`switchboard serve` and `switchboard db upgrade`."""

from __future__ import annotations

import argparse
import asyncio
import socket
from typing import Any

from gateway.cli.output import CliError
from gateway.collector import settle


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--host", help="address to listen on (default SWITCHBOARD_HOST or 127.0.0.1)"
    )
    serve.add_argument("--port", type=_port, help="port (default SWITCHBOARD_PORT or 8420)")
    serve.set_defaults(run=_serve)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="apply the schema migrations")
    upgrade.set_defaults(run=_upgrade)


def _port(value: str) -> int:
    """`--port`: a whole number in the range SWITCHBOARD_PORT accepts (else a usage error)."""
    from gateway.config import PORTS

    problem = argparse.ArgumentTypeError(
        f"expected a port from {PORTS[0]} to {PORTS[-1]}, got {value!r}"
    )
    try:
        port = int(value)
    except ValueError:
        raise problem from None
    if port not in PORTS:
        raise problem
    return port


def _settings(args: argparse.Namespace) -> Any:
    from gateway.config import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise CliError(str(exc)) from exc
    changes = {}
    if getattr(args, "host", None):
        changes["host"] = args.host
    if getattr(args, "port", None) is not None:
        changes["port"] = args.port
    return settings.with_overrides(**changes) if changes else settings


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.app import build_app
    from gateway.config import SettingsError
    from gateway.logs import configure

    settings = _settings(args)
    sockets = _bind(settings.host, settings.port)  # before the gateway makes or opens anything
    configure(settings.log_format, settings.log_level)
    print(
        f"switchboard: serving {settings.domain} on http://{settings.host}:{settings.port}",
        flush=True,
    )
    app = build_app(settings)
    app.on_startup.append(_settle_heap)  # after the lifecycle's start-up (the first entry)
    try:
        web.run_app(app, sock=sockets, print=None, access_log=None)
    except SettingsError as exc:  # found at start: a folder or a server a setting names
        raise CliError(str(exc)) from exc
    except OSError as exc:  # the sockets listen already: this is not expected, but says where
        raise CliError(f"cannot serve on {settings.host}:{settings.port}: {exc}") from exc
    finally:
        for sock in sockets:
            sock.close()  # a no-op once the server has closed them
    return 0


_BACKLOG = 128  # aiohttp's own default for the sites it makes


def _bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address `host` resolves to, as aiohttp would bind them, and
    listening: a port another process holds, even one only bound with SO_REUSEADDR as these
    are, is found here rather than after the gateway has started up. Connections made before
    the start-up ends wait in the backlog and are served once it has."""
    failed = f"cannot listen on {host}:{port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CliError(f"{failed}: {exc.strerror}") from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise CliError(f"{failed}: {exc.strerror or exc}") from exc
    return sockets


async def _settle_heap(_app: object) -> None:
    settle()


def _upgrade(args: argparse.Namespace) -> int:
    from gateway.app import open_database, prepare_data_dir
    from gateway.config import SettingsError

    settings = _settings(args)

    async def run() -> None:
        prepare_data_dir(settings)
        engine = await open_database(settings)  # connected and migrated
        await engine.dispose()

    try:
        asyncio.run(run())
    except SettingsError as exc:
        raise CliError(str(exc)) from exc
    print("switchboard: the schema is up to date")
    return 0
