"""``inspectd publish``: the station's journal records to an MQTT broker, its figures to Prometheus (README, "The
plant"). Runs as inspectd-publish.service; ``--check`` validates the configuration and exits (78 on an error).

    inspectd publish --config /etc/inspectd/publish.toml --check
    inspectd publish --config /etc/inspectd/publish.toml                # the service's command
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from inspectd.daemon.publish.config import DEFAULT_PATH

DEFAULT_STATE = Path("/var/lib/inspectd-publish")


def add_to(commands) -> None:
    parser = commands.add_parser("publish", help="follow the station's journal: MQTT (at least once) and Prometheus metrics")
    parser.add_argument("--config", default=str(DEFAULT_PATH), metavar="FILE")
    parser.add_argument("--state-dir", metavar="DIR", help=f"where the position is kept (default: $STATE_DIRECTORY, else {DEFAULT_STATE})")
    parser.add_argument("--directory", metavar="DIR", help="follow the journal files in DIR instead of this machine's journal")
    parser.add_argument("--check", action="store_true", help="validate the configuration, print what would run, exit")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.cli.check import print_errors
    from inspectd.daemon.publish.config import read
    from inspectd.daemon.station.settings import distinct, every

    config, errors = read(args.config)
    if errors:
        return print_errors([line for error in distinct(errors) for line in every(error)])
    assert config is not None
    if args.check:
        mqtt = config.mqtt
        if mqtt is not None:
            mqtt.password()  # readable, or one line and 78
            broker = (f"{'mqtts' if mqtt.tls else 'mqtt'}://{mqtt.host}:{mqtt.broker_port}"
                      f"{' (plaintext, allowed)' if not mqtt.tls and mqtt.allow_plaintext else ''}")
        print(f"{args.config}: OK: station {config.station_id}, "
              + (f"publishing to {broker} under {mqtt.topic_prefix}/{config.station_id}/" if mqtt else "no [mqtt] table: metrics only")
              + (f", metrics on http://{config.metrics.listen}/metrics" if config.metrics.enabled else ", no metrics"))
        return 0
    if config.mqtt is not None:
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            from inspectd.daemon.errors import InspectdError

            raise InspectdError("paho-mqtt is not installed", fix="pip install 'inspectd[plant]' (the inspectd .deb includes it)") from None
    from inspectd.daemon.publish.publisher import Publisher

    state_dir = Path(args.state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT_STATE)
    if not state_dir.is_dir():
        from inspectd.daemon.errors import InspectdError

        raise InspectdError("the state directory does not exist", file=state_dir, fix="create it (the unit's StateDirectory= does), or pass --state-dir")
    sys.stdout.flush()
    return Publisher(config, state_dir, args.directory).run()
