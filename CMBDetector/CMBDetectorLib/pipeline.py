"""One call from a magnitude volume (and optionally its phase) to microbleed detections.

volume -> validation -> preprocessing -> candidates -> 3D CNN -> YOLO rescoring (+ phase
evidence) -> score fusion -> NMS -> detections -> apparent size and sub-voxel centre (input grid)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .candidates import Candidates, find_candidates
from .cnn import CandidateClassifier
from .config import SCAN_THRESHOLD, DetectorConfig
from .fusion import ScoreFusion, fusion_inputs
from .geometry import Geometry
from .phase import dipole_correlation, highpass_phase, paramagnetic_sign
from .phase_rule import PHASE_RULE, PhaseRule
from .postprocess import nms_3d, to_detections
from .preprocessing import Preprocessed, preprocess
from .progress import CancelCheck, ProgressCallback, StageReporter
from .results import DetectionResult
from .size import measure_detections
from .trained_range import Acquisition, outside_training
from .validation import PreparedInput, prepare_input, run_with_gpu_fallback, select_device
from .yolo_rescore import YoloRescorer

# Candidates the CNN scores below this never reach YOLO; their final score is 0.
CNN_GATE = 0.15


@dataclass
class ScoredCandidates:
    """Every candidate with its stage scores (``yolo`` and ``paramagnetic`` are NaN where they
    were not computed; ``paramagnetic`` is None without a phase image)."""

    prepared: PreparedInput
    pre: Preprocessed
    candidates: Candidates
    cnn: np.ndarray
    yolo: np.ndarray | None
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    paramagnetic: np.ndarray | None = None


def score_candidates(array: np.ndarray, geometry: Geometry, config: DetectorConfig, mask=None,
                     report: StageReporter | None = None, phase=None) -> ScoredCandidates:
    """Run every stage up to the scores; YOLO and the phase evidence look only at candidates
    with CNN >= ``CNN_GATE``."""
    report = report or StageReporter()
    timings: dict[str, float] = {}
    report("Checking input", 0.0)
    prepared = prepare_input(array, geometry, mask=mask, echo=config.echo, phase=phase)
    sign = None if phase is None else paramagnetic_sign(config.phase_convention)
    config.threshold_for(phase is not None)  # an unknown preset fails here, not after the models
    warnings = list(prepared.warnings)
    device, device_warnings = select_device(config.device)
    warnings += device_warnings

    report("Preprocessing", 0.05)
    t = time.perf_counter()
    pre = preprocess(prepared.array, prepared.geometry, prepared.mask, config.modality,
                     progress=report.within("Preprocessing", 0.05, 0.35))
    timings["preprocessing"] = time.perf_counter() - t

    report("Finding candidates", 0.35)
    t = time.perf_counter()
    cands = find_candidates(pre.image, pre.mask, spacing=float(pre.geometry.spacing[0]))
    timings["candidates"] = time.perf_counter() - t

    report("3D CNN", 0.55)
    t = time.perf_counter()
    cnn = run_with_gpu_fallback(
        lambda dev: CandidateClassifier(config.models_dir, dev).score(
            pre.image, cands.kji, progress=report.within("3D CNN", 0.55, 0.75)), device, warnings)
    timings["cnn"] = time.perf_counter() - t

    yolo = None
    if config.use_yolo:
        report("YOLO rescoring", 0.75)
        t = time.perf_counter()
        look = np.flatnonzero(cnn >= CNN_GATE)
        yolo = np.full(len(cands), np.nan, dtype=np.float32)
        yolo[look] = run_with_gpu_fallback(
            lambda dev: YoloRescorer(config.models_dir, dev).score(
                pre.image, cands.kji[look], cands.diameter_mm[look], float(pre.geometry.spacing[0]),
                progress=report.within("YOLO rescoring", 0.75, 0.88)),
            device, warnings)
        timings["yolo"] = time.perf_counter() - t

    paramagnetic = None
    if prepared.phase is not None:
        report("Phase evidence", 0.88)
        t = time.perf_counter()
        paramagnetic = sign * dipole_scores(prepared, pre, cands, np.flatnonzero(cnn >= CNN_GATE))
        timings["phase"] = time.perf_counter() - t
    return ScoredCandidates(prepared, pre, cands, cnn, yolo, device, timings, warnings, paramagnetic)


def dipole_scores(prepared: PreparedInput, pre: Preprocessed, cands: Candidates, look: np.ndarray) -> np.ndarray:
    """Dipole correlation of the candidates ``look`` (NaN for the rest), computed on the input
    grid from the high-pass filtered phase."""
    hp = highpass_phase(prepared.array, prepared.phase, prepared.geometry)
    centres = pre.geometry.ijk_to_ras_points(cands.kji[look][:, ::-1])
    out = np.full(len(cands), np.nan, dtype=np.float32)
    out[look] = dipole_correlation(hp, prepared.geometry, centres, cands.diameter_mm[look] / 2)
    return out


def fusion_rows(scored: ScoredCandidates, use_phase: bool = True,
                use_yolo: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the candidates that passed the CNN gate (those YOLO scored) and their
    score-fusion inputs: with the YOLO column when the stage ran and ``use_yolo``, with the
    paramagnetic column when the scan has a phase image and ``use_phase``."""
    look = np.flatnonzero(scored.cnn >= CNN_GATE)
    phase = scored.paramagnetic[look] if use_phase and scored.paramagnetic is not None else None
    yolo = scored.yolo[look] if use_yolo and scored.yolo is not None else None
    return look, fusion_inputs(scored.cnn[look], yolo, scored.pre.modality == "gre", phase)


def final_scores(scored: ScoredCandidates, models_dir, use_phase: bool = True,
                 rule: PhaseRule = PHASE_RULE, use_yolo: bool = True) -> np.ndarray:
    """Fused probability for every candidate that passed the CNN gate, 0 for the rest.
    ``use_phase`` False ignores the phase image (the magnitude-only fusion), ``use_yolo`` False
    (or a run without the YOLO stage) the YOLO score (the fusions fitted without it); with phase
    the physics ``rule`` bounds the phase fusion by the magnitude-only one (:mod:`.phase_rule`)."""
    with_yolo = use_yolo and scored.yolo is not None
    look, rows = fusion_rows(scored, use_phase, with_yolo)
    with_phase = use_phase and scored.paramagnetic is not None
    fusion = ScoreFusion.load(models_dir, with_phase=with_phase, with_yolo=with_yolo)
    final = np.zeros(len(scored.candidates), dtype=np.float32)
    final[look] = fusion.score(rows)
    if with_phase:
        magnitude = ScoreFusion.load(models_dir, with_yolo=with_yolo).score(rows[:, :-1])
        final[look] = rule.apply(final[look], magnitude, rows[:, -1])
    return final


def select(scored: ScoredCandidates, scores: np.ndarray, threshold: float) -> DetectionResult:
    """Threshold ``scores`` (one per candidate), suppress duplicates, map to input space."""
    pre, cands = scored.pre, scored.candidates
    passed = np.flatnonzero(scores >= threshold)
    points_mm = pre.geometry.ijk_to_ras_points(cands.kji[passed][:, ::-1])
    order = passed[nms_3d(points_mm, scores[passed], cands.diameter_mm[passed])]
    detections = to_detections(
        cands.kji[order], pre.geometry, scored.prepared.geometry, scored.prepared.array.shape,
        cands.diameter_mm[order], cands.response[order], scored.cnn[order],
        None if scored.yolo is None else scored.yolo[order], scores[order],
        None if scored.paramagnetic is None else scored.paramagnetic[order])
    return DetectionResult(detections=detections, geometry=scored.prepared.geometry,
                           timings=dict(scored.timings), warnings=list(scored.warnings),
                           n_candidates=len(cands), device=scored.device, threshold=threshold)


def detect(array: np.ndarray, geometry: Geometry, config: DetectorConfig | None = None,
           mask: np.ndarray | None = None, progress: ProgressCallback | None = None,
           cancel: CancelCheck | None = None, phase: np.ndarray | None = None,
           acquisition: Acquisition | None = None) -> DetectionResult:
    """Detect microbleeds in a ``[k, j, i]`` magnitude volume, helped by its phase image when
    given (same grid); raises ``CMBDetectorError`` on bad input. ``acquisition`` (field strength,
    echo time: what the scan's metadata says) and the slice thickness tell whether the scan lies
    outside the training ranges, where the balanced preset has its own threshold."""
    config = config or DetectorConfig()
    report = StageReporter(progress, cancel)
    scored = score_candidates(array, geometry, config, mask, report, phase)
    report("Score fusion", 0.93)
    t = time.perf_counter()
    final = final_scores(scored, config.models_dir)
    scored.timings["fusion"] = time.perf_counter() - t
    report("Post-processing", 0.95)
    t = time.perf_counter()
    with_phase = scored.paramagnetic is not None
    out_of_range = bool(outside_training(scored.prepared.geometry, acquisition))
    result = select(scored, final, config.threshold_for(with_phase, out_of_range))
    result.scan_threshold, result.used_phase = SCAN_THRESHOLD, with_phase
    prepared = scored.prepared
    result.detections = measure_detections(result.detections, prepared.array, prepared.geometry, prepared.mask)
    result.timings["postprocessing"] = time.perf_counter() - t
    report("Done", 1.0)
    return result
