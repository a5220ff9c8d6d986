"""Frame sources: where pictures of parts come from. One module per kind, each with its
config section (keys, defaults, limits) and its class; ``[source] kind`` chooses one from
``SOURCES``. What every source shares is in ``interface``.
"""

from __future__ import annotations

from inspectd.daemon.station.registry import Registry
from inspectd.daemon.station.sources.directory import DirectoryConfig
from inspectd.daemon.station.sources.interface import BadFrame, Frame, Source, SourceConfig, SourceEnded, SourceFault
from inspectd.daemon.station.sources.opencv import OpenCVConfig
from inspectd.daemon.station.sources.picamera2 import Picamera2Config

SOURCES = Registry("source", Picamera2Config, OpenCVConfig, DirectoryConfig)

__all__ = ["SOURCES", "BadFrame", "DirectoryConfig", "Frame", "OpenCVConfig", "Picamera2Config", "Source", "SourceConfig",
           "SourceEnded", "SourceFault"]
