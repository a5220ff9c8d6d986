"""The examples in the daemon's docstrings run, and say what they show (a stale example fails here)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import inspectd.daemon
from conftest import ROOT

MODULES = sorted(m.name for m in pkgutil.walk_packages(inspectd.daemon.__path__, "inspectd.daemon.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", ["inspectd.daemon", *MODULES])
def test_docstring_examples(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples name the shipped demo model as models/demo-mug
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
