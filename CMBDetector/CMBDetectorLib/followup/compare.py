"""Compare two visits from arrays: register, detect at both visits, call the changes."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from .. import pipeline
from ..config import DetectorConfig
from ..geometry import Geometry
from ..progress import CancelCheck, ProgressCallback, StageReporter
from ..results import Detection, DetectionResult
from .change import EVIDENCE_FLOOR, Cutoffs, VisitChange, compare_detections
from .registration import register


@dataclass(frozen=True)
class Visit:
    """One scan: ``[k, j, i]`` magnitude, its geometry and optionally its phase (same grid)."""

    array: np.ndarray
    geometry: Geometry
    phase: np.ndarray | None = None


@dataclass
class VisitComparison:
    """The change call plus each visit's detections (those reaching the threshold) and the
    weaker ones kept as evidence (``evidence``: baseline, follow-up; down to the floor)."""

    change: VisitChange
    baseline: DetectionResult
    followup: DetectionResult
    evidence: tuple[list[Detection], list[Detection]]


def _above(result: DetectionResult, threshold: float) -> DetectionResult:
    return replace(result, detections=[d for d in result.detections if d.score >= threshold], threshold=threshold)


def compare_visits(baseline: Visit, followup: Visit, config: DetectorConfig | None = None,
                   cutoffs: Cutoffs = Cutoffs(), progress: ProgressCallback | None = None,
                   cancel: CancelCheck | None = None) -> VisitComparison:
    """Register the follow-up to the baseline (raises ``CMBDetectorError`` when that fails, before
    any detector run), detect at both visits and call new / possible new / persistent /
    resolved for each microbleed."""
    config = config or DetectorConfig()
    report = StageReporter(progress, cancel)
    timings = {}
    report("Registering follow-up to baseline", 0.0)
    t = time.perf_counter()
    registration = register(baseline.array, baseline.geometry, followup.array, followup.geometry)
    timings["registration"] = time.perf_counter() - t
    registration.require_ok()
    evidence = replace(config, threshold=EVIDENCE_FLOOR)
    results = []
    for n, (name, visit) in enumerate((("baseline", baseline), ("follow-up", followup))):
        t = time.perf_counter()
        start = 0.05 + 0.45 * n
        step = None if progress is None else (
            lambda stage, f, name=name, start=start: progress(f"{name}: {stage}", start + 0.45 * f))
        results.append(pipeline.detect(visit.array, visit.geometry, evidence, progress=step, cancel=cancel,
                                       phase=visit.phase))
        timings[f"detect {name}"] = time.perf_counter() - t
    report("Calling changes", 0.95)
    thresholds = tuple(config.threshold_for(v.phase is not None) for v in (baseline, followup))
    change = compare_detections(results[0].detections, results[1].detections, thresholds, registration,
                                (baseline.array, baseline.geometry), cutoffs)
    change.timings = timings
    report("Done", 1.0)
    return VisitComparison(change, _above(results[0], thresholds[0]), _above(results[1], thresholds[1]),
                           (results[0].detections, results[1].detections))
