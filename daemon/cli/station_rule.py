"""The decision rule ``infer``, ``evaluate`` and ``calibrate`` apply: the station's, so that what they print is what
the station does.

``--config FILE`` takes that station's ``[model] threshold`` and ``[decision]`` (minimum defect area, pixel
threshold, confirmation); by default the installed configuration, when it exists and is for the model folder
measured; ``--no-config`` measures the folder's own threshold alone.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from inspectd.daemon.station.paths import DEFAULT_PATH

if TYPE_CHECKING:
    from inspectd.daemon.runtime.decision import Rule
    from inspectd.daemon.runtime.model import Model


@dataclass(frozen=True)
class StationRule:
    rule: Rule
    note: str | None  # where the rule came from, when not from the folder alone
    config: Path | None = None  # the configuration it was read from
    threshold_overridden: bool = False  # the configuration sets model.threshold: the folder's threshold is not what it applies


def add_to(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", type=Path,
                        help=f"apply this station's decision rule ([model] threshold, [decision]); default: {DEFAULT_PATH} when it "
                             "exists and names this model folder")
    source.add_argument("--no-config", action="store_true", help="the model folder's own threshold alone")


def station_rule(args: argparse.Namespace, model: Model) -> StationRule:
    """The rule to apply to ``model`` (a configuration error exits 78, as ``inspectd check`` would)."""
    if args.no_config or (args.config is None and not DEFAULT_PATH.exists()):
        return StationRule(model.rule(), None)
    from inspectd.daemon.station.config import load, threshold_errors  # only with a configuration: the station's parts cost a start
    from inspectd.daemon.station.settings import raise_all

    path = args.config or DEFAULT_PATH
    config = load(path)
    same = Path(config.model.path).resolve() == model.folder.path.resolve()
    if args.config is None and not same:
        return StationRule(model.rule(), f"{path} is for the model folder {config.model.path}: this folder's own threshold applies "
                                         "(--config to apply that station's rule anyway)")
    raise_all(threshold_errors(config, model.threshold))
    rule = config.rule(model.threshold)
    written_for = "" if same else f", written for {config.model.path}"
    return StationRule(rule, f"the station's rule from {path}{written_for}: {rule.describe()}", path,
                       config.model.threshold is not None)
