"""``inspectd web``: the station page (what inspectd-web.service starts).

    inspectd web                                  # /etc/inspectd/web.toml: loopback, port 8080
    inspectd web --config web.toml --port 8081

A process of its own beside the station: it reads the station's journal, its reject archive and its
live tap, and changes nothing. Off loopback it needs a password (a systemd credential) and HTTPS.
"""

from __future__ import annotations

import argparse
import signal
import sys

from inspectd.daemon.web.settings import DEFAULT_PATH


def add_to(commands) -> None:
    parser = commands.add_parser("web", help="the station page: live frame, verdicts, shift, rejects, model (read-only)")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE", help=f"default {DEFAULT_PATH} (absent: loopback, port 8080)")
    parser.add_argument("--listen", metavar="ADDRESS", help="overrides listen")
    parser.add_argument("--port", type=int, metavar="N", help="overrides port")
    parser.add_argument("--station-config", metavar="FILE", help="overrides station_config (the station's inspectd.toml)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import asyncio  # here, not at the top: every command's parser imports this module
    import dataclasses
    import logging

    from inspectd.daemon.web.settings import WebConfig, load

    config = load(args.config)
    overrides = {name: value for name, value in (("listen", args.listen), ("port", args.port),
                                                 ("station_config", args.station_config)) if value is not None}
    if overrides:
        file = config.file
        config = WebConfig(**{**{spec.name: getattr(config, spec.name) for spec in dataclasses.fields(config) if spec.name != "file"},
                              **overrides})
        config.file = file
    logging.basicConfig(level=logging.WARNING, format="inspectd web: %(message)s", stream=sys.stderr)
    password = config.read_password()
    return asyncio.run(serve_until_stopped(config, password))


async def serve_until_stopped(config, password: str | None) -> int:
    import asyncio

    from inspectd.daemon.station.notify import Notifier
    from inspectd.daemon.web.server import Page, serve

    page = Page(config, password)
    server = serve(page)
    scheme = "https" if config.https else "http"
    host = f"[{config.listen}]" if ":" in config.listen else config.listen
    print(f"inspectd web: serving the station page on {scheme}://{host}:{config.port}/ "
          f"({'password required' if password else 'no password: loopback only'}); journal: "
          f"{config.journal_directory or 'this machine'}, station: {config.station_config}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    notifier = Notifier()
    notifier.ready(f"serving on {scheme}://{host}:{config.port}/")
    await stop.wait()
    notifier.stopping("stopping")
    server.stop()
    page.close()
    return 0
