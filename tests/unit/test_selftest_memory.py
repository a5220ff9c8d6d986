"""The self-test memory: a record is used only for exactly its key, and memory that cannot be read or kept never stops a
load nor makes it verify less. The real demo folder, a real self-test, real OpenVINO."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from inspectd.daemon.runtime.model import Model, compile_config, read_graph
from inspectd.daemon.runtime.selftest import load_cases, run_self_test
from inspectd.daemon.runtime.selftest_memory import MAX_RECORD_BYTES, SelfTestMemory, default_folder, memory_key
from inspectd.daemon.schema import ModelFolder, read_model_folder

NOBODY = pwd.getpwnam("nobody").pw_uid


@pytest.fixture(scope="module")
def demo(demo_model) -> ModelFolder:
    return read_model_folder(demo_model)


@pytest.fixture(scope="module")
def key(demo) -> dict:
    core = ov.Core()
    return memory_key(demo, "CPU", core.get_property("CPU", "FULL_DEVICE_NAME"), core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
                      ov.__version__, compile_config("f32"))


@pytest.fixture(scope="module")
def passed(demo):
    """The demo folder's real f32 self-test on this machine."""
    core = ov.Core()
    graph, weights = read_graph(core, demo)
    compiled = core.compile_model(graph, "CPU", compile_config("f32"))
    result = run_self_test(compiled, demo.metadata.outputs.anomaly_map, demo.metadata.outputs.score, load_cases(demo), "f32")
    assert result.passed
    return result


@pytest.fixture()
def memory(tmp_path) -> SelfTestMemory:
    return SelfTestMemory(tmp_path / "state" / "selftest-memory")


def test_a_remembered_result_comes_back_for_its_key(memory, key, passed):
    assert memory.recall(key) is None
    memory.remember(key, passed)
    found = memory.recall(key)
    assert found.remembered and dataclasses.replace(found, remembered=None) == passed
    assert memory.trouble is None
    assert (memory.folder.stat().st_mode & 0o777) == 0o700


def changed(value):
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, int):
        return value + 1
    if isinstance(value, list):
        return value[:-1]
    return {**value, "INFERENCE_PRECISION_HINT": "bf16"}


def test_any_part_of_the_key_changed_is_a_miss(memory, key, passed):
    """The class, not examples: each field of the key in turn (folder, device, capabilities, CPUs, OpenVINO, compile, rule)."""
    memory.remember(key, passed)
    for name in key:
        assert memory.recall({**key, name: changed(key[name])}) is None, name
    assert memory.recall({**key, "extra": 1}) is None and memory.recall({k: v for k, v in key.items() if k != "device"}) is None
    assert memory.recall(key) is not None


def test_the_folders_bytes_and_threshold_are_in_the_key(demo, demo_model, key):
    """Another model.bin, selftest.npz or threshold (calibrate's new one, in memory only) is another metadata: another key."""
    core = ov.Core()
    name, capabilities = core.get_property("CPU", "FULL_DEVICE_NAME"), core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    meta = demo.metadata
    others = [dataclasses.replace(meta, threshold=dataclasses.replace(meta.threshold, value=meta.threshold.value * 1.01)),
              dataclasses.replace(meta, files=dataclasses.replace(meta.files, model_bin=dataclasses.replace(meta.files.model_bin, sha256="0" * 64))),
              dataclasses.replace(meta, files=dataclasses.replace(meta.files, selftest_npz=dataclasses.replace(meta.files.selftest_npz, sha256="1" * 64)))]
    for other in others:
        other_key = memory_key(ModelFolder(demo.path, other, demo.contents), "CPU", name, capabilities, ov.__version__, compile_config("f32"))
        assert other_key["metadata_sha256"] != key["metadata_sha256"]
    unchecked = read_model_folder(demo_model, check_hashes=False)  # its files were not checked against their sha256: never remembered
    assert memory_key(unchecked, "CPU", name, capabilities, ov.__version__, compile_config("f32")) is None


def corruptions(path: Path, record: bytes):
    yield "truncated", lambda: path.write_bytes(record[: len(record) // 2])
    yield "empty", lambda: path.write_bytes(b"")
    yield "garbage", lambda: path.write_bytes(os.urandom(700))
    yield "huge", lambda: path.write_bytes(record + b" " * MAX_RECORD_BYTES)
    yield "a list", lambda: path.write_text("[]")
    yield "nested too deep", lambda: path.write_text("[" * 30000 + "]" * 30000)
    data = json.loads(record)
    yield "another key's record", lambda: path.write_text(json.dumps({**data, "key": {**data["key"], "openvino": "2020.1"}}))
    for name, value in [("kind", "something else"), ("when", 3), ("result", None)]:
        yield f"{name} changed", lambda name=name, value=value: path.write_text(json.dumps({**data, name: value}))
    for name, value in [("frames", "8"), ("problem", 1), ("seconds", None), ("flips", True), ("requested", "bf16")]:
        yield f"result.{name} {value!r}", lambda name=name, value=value: path.write_text(json.dumps({**data, "result": {**data["result"], name: value}}))
    yield "a result field missing", lambda: path.write_text(json.dumps({**data, "result": {k: v for k, v in data["result"].items() if k != "limit"}}))
    yield "a result field more", lambda: path.write_text(json.dumps({**data, "result": {**data["result"], "passed": True}}))

    def foreign():
        path.write_bytes(record)
        os.chown(path, NOBODY, -1)
    yield "another user's", foreign

    def group_writable():
        path.write_bytes(record)
        path.chmod(0o660)
    yield "group-writable", group_writable

    def symlink():
        elsewhere = path.with_name("elsewhere")
        elsewhere.write_bytes(record)
        path.unlink()
        path.symlink_to(elsewhere)
    yield "a symlink", symlink

    def fifo():
        path.unlink()
        os.mkfifo(path)
    yield "a FIFO", fifo


def test_a_record_that_is_not_exactly_one_is_a_miss_and_is_replaced(memory, key, passed):
    memory.remember(key, passed)
    path = next(memory.folder.glob("*.json"))
    record = path.read_bytes()
    for what, corrupt in corruptions(path, record):
        corrupt()
        assert memory.recall(key) is None, what
        memory.remember(key, passed)  # the next load's fresh result takes its place
        assert memory.recall(key) is not None, what
        assert memory.trouble is None, what
        path.with_name("elsewhere").unlink(missing_ok=True)


def test_a_folder_others_may_write_is_not_believed(memory, key, passed):
    memory.remember(key, passed)
    memory.folder.chmod(0o777)
    assert memory.recall(key) is None and "only it may write" in memory.trouble
    memory.folder.chmod(0o700)
    os.chown(memory.folder, NOBODY, -1)
    assert memory.recall(key) is None


def test_unwritable_memory_loads_with_a_fresh_self_test_and_one_note(demo_model, tmp_path, key, passed):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    memory = SelfTestMemory(blocker / "selftest-memory")
    memory.remember(key, passed)
    assert memory.recall(key) is None and "cannot keep a record" in memory.trouble
    model = Model.load(demo_model, precision="f32", memory=SelfTestMemory(blocker / "selftest-memory"))
    assert model.precision == "f32" and model.trials[-1].passed and model.trials[-1].remembered is None
    assert [note for note in model.notes if note.startswith("self-test memory:")] == [
        f"self-test memory: cannot keep a record in {blocker / 'selftest-memory'} (Not a directory); the self-test runs at every load"]


def test_a_second_load_replays_nothing_and_scores_the_same(demo_model, memory):
    first = Model.load(demo_model, memory=memory)
    assert first.trials and not any(trial.remembered for trial in first.trials) and first.timings["self_test_s"] > 0
    second = Model.load(demo_model, memory=memory)
    assert second.precision == first.precision and all(trial.remembered for trial in second.trials)
    assert [repr(dataclasses.replace(t, remembered=None)) for t in second.trials] == [repr(t) for t in first.trials]  # nan != nan
    assert second.timings["self_test_s"] == 0
    assert all("remembered from" in line for line in second.precision_report()[:len(second.trials)])
    if second.fallback:  # a faster precision failed here: said, with its date, and not compiled again
        assert "(remembered from" in second.fallback and second.fallback.endswith(f"running at {second.precision}")
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    a, b = first.infer(frame), second.infer(frame)
    assert a.score == b.score and np.array_equal(a.model_map, b.model_map)


def test_a_remembered_failure_of_the_last_precision_is_replayed(demo_model, demo, memory, key, passed):
    """A folder is refused only by a fresh self-test: f32's remembered failure does not stop a load."""
    memory.remember(key, dataclasses.replace(passed, problem="verdict flip on a frame"))
    model = Model(demo, precision="f32", memory=memory)
    assert model.trials[-1].passed and model.trials[-1].remembered is None
    assert memory.recall(key).passed  # and the fresh pass replaced it


def test_a_remembered_pass_at_another_executed_precision_is_replayed(demo, memory, key, passed):
    memory.remember(key, dataclasses.replace(passed, executed="bf16"))
    model = Model(demo, precision="f32", memory=memory)
    assert model.trials[-1].remembered is None and model.trials[-1].executed == "f32"


def test_where_the_memory_lives(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:{tmp_path}/other")
    assert default_folder() == tmp_path / "state" / "selftest-memory"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_folder() == tmp_path / "cache" / "inspectd" / "selftest-memory"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_folder() == tmp_path / "home" / ".cache" / "inspectd" / "selftest-memory"

