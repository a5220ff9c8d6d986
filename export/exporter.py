"""``inspectd export``: checkpoint -> verified model folder, written atomically."""

from __future__ import annotations

import shutil
import sys
import tempfile
from datetime import datetime, UTC
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from collections.abc import Callable

import numpy as np

from inspectd.daemon import schema
from inspectd.daemon.errors import InspectdError
from inspectd.daemon.evaluation import thresholds
from inspectd.daemon.evaluation.metrics import auroc
from inspectd.daemon.evaluation.roles import digest
from inspectd.daemon.evaluation.thresholds import DEFAULT_CONFIDENCE, DEFAULT_FALSE_REJECT_RATE
from inspectd.daemon.runtime.colour import files_color
from inspectd.daemon.runtime.decision import Rule
from inspectd.daemon.runtime.model import Model
from inspectd.daemon.schema import read_model_folder, sha256_of

from . import calibration, f16_stages, selftest, verify
from .checkpoint import PadimCheckpoint, load_checkpoint
from .progress import Bar, quiet
from .graph import BLOCK, MAP_OUTPUT, SCORE_OUTPUT, WEIGHTS, choose_distance_scale, distance_cap, export_ir


def _say(message: str) -> None:
    print(f"inspectd export: {message}", file=sys.stderr, flush=True)


def _version(package: str) -> str:
    try:
        return package_metadata.version(package)
    except package_metadata.PackageNotFoundError:
        return "not installed"


def export_checkpoint(
    checkpoint_path: str | Path,
    out: str | Path,
    input_size: tuple[int, int] | None = None,
    calibration_dir: str | Path | None = None,
    threshold_from: str = "auto",
    force: bool = False,
    progress: Callable[[str], None] = _say,
    max_score_error: float = verify.MAX_RELATIVE_SCORE_ERROR,
    threshold_for: str = "false-rejects",
    false_reject_rate: float = DEFAULT_FALSE_REJECT_RATE,
    confidence: float = DEFAULT_CONFIDENCE,
    prefix: str = "inspectd export",
    color: str = "auto",
) -> schema.ModelMetadata:
    """Export, calibrate, verify; returns the metadata written. Nothing is left in ``out`` on failure.

    A threshold measured on calibration images is, by default, the one for ``false_reject_rate``
    on their good images (``threshold_for="false-rejects"``); ``"f1"`` takes the F1-optimal one.
    ``color`` is what the checkpoint was trained on ("rgb" or "gray", recorded as ``input.color``);
    "auto" reads it from the calibration images (colour without them: a checkpoint does not say).
    """
    return export_verified(checkpoint_path, out, input_size, calibration_dir, threshold_from, force, progress, max_score_error,
                           threshold_for, false_reject_rate, confidence, prefix, color).metadata


@dataclass
class Exported:
    metadata: schema.ModelMetadata
    samples: list[calibration.Sample]  # the images verified on
    scores: np.ndarray  # each one's score by the exported folder (the station's runtime, f32)


def export_verified(
    checkpoint_path: str | Path,
    out: str | Path,
    input_size: tuple[int, int] | None = None,
    calibration_dir: str | Path | None = None,
    threshold_from: str = "auto",
    force: bool = False,
    progress: Callable[[str], None] = _say,
    max_score_error: float = verify.MAX_RELATIVE_SCORE_ERROR,
    threshold_for: str = "false-rejects",
    false_reject_rate: float = DEFAULT_FALSE_REJECT_RATE,
    confidence: float = DEFAULT_CONFIDENCE,
    prefix: str = "inspectd export",
    color: str = "auto",
    samples: list[calibration.Sample] | None = None,
    threshold: schema.Threshold | None = None,
    roles: schema.ImageRoles | None = None,
) -> Exported:
    """``export_checkpoint``, keeping the exported scores. ``train`` passes its report images as ``samples`` (verified on,
    never used to choose), the ``threshold`` it set on other images and the ``roles`` of its images."""
    out = Path(out)
    if out.exists() and not force:
        raise InspectdError(f"{out}: already exists; choose another --out or pass --force to replace it")
    progress(f"loading {checkpoint_path}")
    checkpoint = load_checkpoint(checkpoint_path, input_size)
    if samples is None:
        samples = calibration.collect(calibration_dir) if calibration_dir else []
    color = _color(color, samples, calibration_dir, progress)
    if threshold is not None:
        threshold_from = "given"
    if threshold_from == "checkpoint" and checkpoint.threshold is None:
        raise InspectdError(f"{checkpoint_path}: {checkpoint.threshold_problem}; drop --threshold-from checkpoint and pass --calibration DIR")
    use_checkpoint_threshold = checkpoint.threshold is not None and threshold_from not in ("calibration", "given")
    if not use_checkpoint_threshold and not samples and threshold is None:
        why = checkpoint.threshold_problem or "--threshold-from calibration was asked for"
        raise InspectdError(
            f"{checkpoint_path}: {why}; pass --calibration DIR with images of good parts "
            f"(and optionally defect sub-folders) to measure the threshold"
        )
    with atomic_folder(out) as work:
        rule = (threshold_for, false_reject_rate, confidence)
        with quiet():
            meta, scores = _export_into(work, checkpoint, samples, use_checkpoint_threshold, progress, max_score_error, rule, prefix,
                                        color, threshold, roles)
    progress(f"wrote {out}")
    return Exported(meta, samples, scores)


@contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A hidden temporary folder beside ``out``: renamed to ``out`` when the block succeeds, removed when it fails."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the station's service user must read it
    try:
        yield work
        _replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _replace(work: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.replaced")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out)


def _color(color: str, samples: list, calibration_dir, progress) -> str:
    """The colour mode to record: as asked, else the calibration images'; asked and the images disagree: refused."""
    if color not in ("auto", *schema.COLOR_MODES):
        raise InspectdError(f"--color {color}: must be auto, rgb or gray")
    if not samples:
        return schema.RGB if color == "auto" else color
    found = files_color((s.path for s in samples), f"the calibration images in {calibration_dir}")
    if color not in ("auto", found):
        shown = {schema.RGB: "colour", schema.GRAY: "grayscale"}
        raise InspectdError(f"--color {color}: the calibration images in {calibration_dir} are {shown[found]}; pass the images the "
                            f"model was trained on, or --color {found}")
    if found == schema.GRAY:
        progress("the calibration images are grayscale: the model folder takes grayscale frames (input.color \"gray\")")
    return found


def _export_into(work: Path, checkpoint: PadimCheckpoint, samples: list, use_checkpoint_threshold: bool, progress,
                 max_score_error: float, rule: tuple[str, float, float], prefix: str, color: str = schema.RGB,
                 given: schema.Threshold | None = None, roles: schema.ImageRoles | None = None) -> tuple[schema.ModelMetadata, np.ndarray]:
    height, width = checkpoint.preprocess.output_size()
    progress(f"converting PaDiM {checkpoint.backbone} {list(checkpoint.layers)} at {height}x{width} to OpenVINO IR")
    created = datetime.now(UTC).isoformat(timespec="seconds")
    frames = [verify.Frame(str(s.path), path=s.path) for s in samples] or verify.synthetic_frames(gray=color == schema.GRAY)
    if not samples:
        progress("no --calibration images: verifying on synthetic frames (pass --calibration to verify on real parts)")
    labels = np.array([s.anomalous for s in samples], dtype=bool)
    with Bar(prefix, "converting to OpenVINO IR, scaling its distances for f16 and compiling it"):
        draft = schema.ModelFolder(work, _draft(checkpoint, color))  # no threshold or self-test yet: compiled untested
        export_ir(checkpoint, work, None)  # unscaled: the range of this model's distances on these frames
        scale = choose_distance_scale(verify.exported_scores(Model(draft, precision="f32"), frames), ~labels if samples else None)
        export_ir(checkpoint, work, scale)
        model = Model(draft, precision="f32")
    progress(f"distances scaled by 2^{scale} inside the graph (squared, capped at {distance_cap(scale):g}): f16 holds them")
    with Bar(prefix, "verifying: every frame scored by torch and by the exported model", len(frames)) as bar:
        scores = verify.compare(checkpoint, model, frames, bar.advance)

    if given is None:
        threshold = _threshold(checkpoint, scores, samples, labels, use_checkpoint_threshold, progress, rule)
        if not use_checkpoint_threshold and roles is None:  # set on the calibration good images; what the model was fitted on is not known
            roles = schema.ImageRoles(fit=None, threshold=tuple(digest(s.path) for s in samples if not s.anomalous),
                                      threshold_cross_fitted=False)
    else:
        threshold = given
    # The reference verdict is anomalib's: score >= its own threshold, when it is the checkpoint's.
    reference_threshold = checkpoint.threshold if use_checkpoint_threshold else threshold.value
    result = verify.report(scores, threshold.value, reference_threshold, use_checkpoint_threshold, max_score_error)
    progress(
        f"verification on {result.frames} frames: max |Δscore| {result.max_abs_score_delta:.5f} "
        f"({result.max_relative_score_error * 100:.3f}% of the threshold {threshold.value:.4f}), "
        f"{result.verdict_flips} verdict flips, anomaly-map correlation ≥ {result.min_map_correlation:.6f}"
    )
    if not result.passed:
        raise InspectdError(
            f"{checkpoint.path}: export verification failed: {result.verdict_flips} verdict flips "
            f"({', '.join(result.flipped_frames[:3])}), max score error {result.max_relative_score_error * 100:.2f}% "
            f"of the threshold (limit {max_score_error * 100:g}%); nothing was written"
        )
    with Bar(prefix, "choosing what of the backbone stays at f32 on an f16 device"):
        kept = f16_stages.choose(draft, frames, scores, threshold.value, max_score_error / 2)
    for line in kept.lines:
        progress(line)
    head = schema.Head(form="cholesky-triangular", block=BLOCK, distance_scale_log2=scale, squared_distance_cap=distance_cap(scale),
                       kept_at_f32=kept.description)
    runtime = _runtime(draft, scores, frames, threshold.value, max_score_error, result, progress, prefix)
    with Bar(prefix, "writing the self-test"):
        self_test = selftest.write(work, frames, scores, threshold.value, draft.preprocessing, max_score_error, max_score_error / 2)
    meta = schema.ModelMetadata(
        created=created,
        model=draft.metadata.model,
        input=draft.metadata.input,
        preprocess=draft.metadata.preprocess,
        outputs=draft.metadata.outputs,
        head=head,
        threshold=threshold,
        normal_scores=calibration.normal_statistics(scores.exported[~labels]) if samples and not labels.all() else None,
        runtime=runtime,
        versions=schema.Versions(inspectd=_version("inspectd"), anomalib=_version("anomalib"), openvino=_version("openvino"),
                                 torch=_version("torch"), pytorch_lightning=checkpoint.lightning_version),
        files=schema.Files(model_xml=_file_entry(work / "model.xml"), model_bin=_file_entry(work / "model.bin"),
                           selftest_npz=_file_entry(work / schema.SELFTEST_FILE)),
        calibration_image_auroc=auroc(scores.exported, labels) if samples else None,
        verification=result,
        self_test=self_test,
        images=roles,
    )
    meta.write(work)
    with Bar(prefix, "loading the folder as the station does (self-test at each precision)"):
        final = Model(read_model_folder(work))  # the folder as the station loads it, self-test included
    for trial in final.trials:
        progress(trial.summary())
    return meta, scores.exported


def _threshold(checkpoint: PadimCheckpoint, scores, samples: list, labels: np.ndarray, use_checkpoint_threshold: bool,
               progress, rule: tuple[str, float, float]) -> schema.Threshold:
    if use_checkpoint_threshold:
        value = checkpoint.threshold
        tolerance = max(float(np.abs(scores.exported - scores.reference).max()) * 2.0, value * 1e-6)
        settled = verify.settle_tie(value, scores.reference, tolerance) if samples else None
        if settled is None:
            return schema.Threshold(value=value, source="checkpoint")
        progress(f"checkpoint threshold {value:.4f} sits on a calibration image's score; using {settled:.4f} (same verdicts, off the edge)")
        return schema.Threshold(value=settled, source="checkpoint", checkpoint_value=value,
                                note="sat on a calibration image's score; moved to the middle of the gap around it so rounding cannot decide that image")
    good, defective = scores.exported[~labels], scores.exported[labels]
    threshold_for, false_reject_rate, confidence = rule
    if threshold_for == "f1" and labels.any():
        choice = thresholds.f1_optimal(good, defective)
    else:
        choice = thresholds.for_false_reject_rate(good, false_reject_rate, defective, confidence)
    for line in choice.lines():
        progress(line)
    return choice.record()


def _runtime(folder: schema.ModelFolder, scores, frames: list, threshold: float, max_score_error: float,
             f32_result: schema.Verification, progress, prefix: str = "inspectd export") -> schema.Runtime:
    """bf16 and f16, verified only where this CPU really runs them.

    An x86 CPU without native bf16/f16 compiles them as f32 without a word; that is read back
    from the compiled model and recorded as "not-checked": the station's self-test decides on
    the device. Where they really run: "verified" with no verdict flips and at most half the
    score error the export allows (the margin covers frames the self-test does not hold), else
    "refused", which the runtime then does not try on a CPU of the same name (another kind of CPU runs other kernels: its self-test decides).
    """
    checks = {"f32": schema.PrecisionCheck(status="verified", executed_as="f32", max_relative_score_error=f32_result.max_relative_score_error,
                                           verdict_flips=f32_result.verdict_flips)}
    verified = []
    for precision in ("bf16", "f16"):
        model = Model(folder, precision=precision)
        if model.precision != precision:
            checks[precision] = schema.PrecisionCheck(
                status="not-checked", executed_as=model.precision,
                why=f"this CPU compiles {precision} as {model.precision}; the station's self-test decides where it runs")
            progress(f"{precision}: not checked on this machine (the CPU runs it as {model.precision}); the station's self-test decides on the device")
            continue
        try:
            with Bar(prefix, f"checking {precision}: every frame through the exported model at {precision}", len(frames)) as bar:
                exported = verify.exported_scores(model, frames, bar.advance)
        except InspectdError as exc:  # a non-finite score: the precision overflows
            checks[precision] = schema.PrecisionCheck(status="refused", executed_as=precision, why=str(exc).split(": ", 1)[-1][:120])
            progress(f"{precision}: refused ({checks[precision].why})")
            continue
        error = float(np.abs(exported - scores.reference).max() / threshold)
        rule = Rule(threshold)
        flips = sum(rule.anomalous(a)[0] != rule.anomalous(b)[0] for a, b in zip(exported, scores.exported))
        ok = flips == 0 and error <= max_score_error / 2
        checks[precision] = schema.PrecisionCheck(status="verified" if ok else "refused", executed_as=precision,
                                                  max_relative_score_error=error, verdict_flips=flips)
        if ok:
            verified.append(precision)
        progress(f"{precision}: max score error {error * 100:.3f}% of the threshold, {flips} flips: {'verified' if ok else 'refused'}")
    return schema.Runtime(weights=WEIGHTS, verified_precisions=(*verified, "f32"), precision_checks=schema.PrecisionChecks(**checks),
                          checked_on=schema.CheckedOn(cpu=model.device_name, openvino=_version("openvino")))


def _draft(checkpoint: PadimCheckpoint, color: str = schema.RGB) -> schema.Draft:
    pre = checkpoint.preprocess
    height, width = pre.output_size()
    padim = checkpoint.model
    return schema.Draft(
        model=schema.ModelInfo(backbone=checkpoint.backbone, layers=tuple(checkpoint.layers), n_features=int(padim.idx.numel()),
                               feature_positions=int(padim.gaussian.inv_covariance.shape[0]), checkpoint=checkpoint.path.name,
                               checkpoint_sha256=checkpoint.sha256),
        input=schema.GraphInput(height=height, width=width, color=color),
        preprocess=schema.Preprocess(resize=schema.Resize(size=pre.resize), center_crop=pre.center_crop,
                                     normalize=schema.Normalize(mean=pre.mean, std=pre.std), recorded_in_checkpoint=pre.recorded),
        outputs=schema.Outputs(anomaly_map=MAP_OUTPUT, score=SCORE_OUTPUT),
    )


def _file_entry(path: Path) -> schema.FileEntry:
    return schema.FileEntry(sha256=sha256_of(path), bytes=path.stat().st_size)
