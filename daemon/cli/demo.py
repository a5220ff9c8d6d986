"""``inspectd demo`` (the main job on a fresh machine) and ``inspectd demo-data DIR``.

The demo generates the synthetic mug station (``inspectd.daemon.demo.scene``) and runs the
station daemon over it with the demo model installed with the package (``models/demo-mug`` in
the repository): one verdict line per image, rejects archived, GPIO in memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_to(commands) -> None:
    demo = commands.add_parser("demo", help="generate the demo station images and run the station daemon over them with the shipped demo model")
    demo.add_argument("--model", metavar="DIR", help="model folder (default: the demo model installed with inspectd)")
    demo.add_argument("--data", default="demo-data", metavar="DIR", help="where to write the demo images (default: ./demo-data)")
    demo.set_defaults(run=run)

    demo_data = commands.add_parser("demo-data", help="write the synthetic demo station dataset (MVTec layout)")
    demo_data.add_argument("out", metavar="DIR")
    demo_data.add_argument("--seed", type=int, default=0)
    demo_data.set_defaults(run=run_demo_data)


def run_demo_data(args: argparse.Namespace) -> int:
    from inspectd.daemon.demo.scene import generate_station_dataset
    from inspectd.daemon.files import output_folder

    print(generate_station_dataset(output_folder(args.out, key="DIR"), seed=args.seed))
    return 0


def run(args: argparse.Namespace) -> int:
    from inspectd.daemon.demo import demo_model
    from inspectd.daemon.demo.scene import generate_station_dataset
    from inspectd.daemon.files import output_folder
    from inspectd.daemon.station.config import ArchiveConfig, Config, GpioConfig, JournalConfig, ModelConfig, ReadyLineConfig, RejectLineConfig
    from inspectd.daemon.station.loop import Station
    from inspectd.daemon.station.outputs.journal import JournalOutput
    from inspectd.daemon.station.sources import DirectoryConfig

    model_dir = Path(args.model) if args.model else demo_model()
    data = generate_station_dataset(output_folder(args.data, key="--data"), n_train=0)  # the demo replays the test images only
    replay = data / "replay"
    replay.mkdir(exist_ok=True)
    for image in sorted((data / "test").glob("*/*.png")):
        link = replay / f"{image.parent.name}_{image.name}"
        if not link.exists():
            link.symlink_to(image.resolve())
    config = Config(
        model=ModelConfig(path=str(model_dir)),
        source=DirectoryConfig(path=str(replay), mode="once"),
        journal=JournalConfig(enabled=False),
        archive=ArchiveConfig(path=str(data / "rejects")),
        gpio=GpioConfig(chip="memory", reject=RejectLineConfig(line="GPIO17"), ready=ReadyLineConfig(line="GPIO27")),
        file="inspectd demo",
    )
    print(f"inspectd demo: replaying {len(list(replay.iterdir()))} demo station images from {replay} through the station "
          f"daemon with {model_dir} (GPIO in memory; rejects archived in {data / 'rejects'})", file=sys.stderr)
    return Station(config, extra_outputs=[JournalOutput(config.journal, to_stderr=True)]).run()
