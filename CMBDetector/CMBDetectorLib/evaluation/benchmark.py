"""Held-out synthetic benchmark: lesion- and subject-level figures, ablation rows, FROC, runtime.

Seeds start at ``TEST_SEED0`` (training uses seeds below 10 000, threshold tuning
``VALIDATION_SEED0``); every fourth scan is a
1.5 T 2D GRE and every sixth has no microbleed, so both hard cases are always in the set.
The stress set (``STRESS_SEED0``) is a protocol family outside the training ranges with the
engine's STRESS randomisation; no training or tuning recipe draws from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..candidates import MIN_RESPONSE
from ..config import DetectorConfig, preset_threshold
from ..phase_rule import PhaseRule
from ..pipeline import final_scores, score_candidates, select
from ..postprocess import nms_3d
from ..size import measure_detections
from ..synth.acquisition import (STRESS_FAMILY, sample_mid_slice_protocol, sample_shifted_protocol,
                                 sample_stress_protocol)
from ..trained_range import Acquisition, outside_training
from .metrics import lesion_metrics, match_candidates, match_detections, subject_metrics
from .mimics import MIMICS, mimic_kinds, vein_gaps

TEST_SEED0 = 100_000
VALIDATION_SEED0 = 50_000
STRESS_SEED0 = 900_000
NO_RULE = PhaseRule(diamagnetic_cutoff=-np.inf, phase_may_raise=True)  # the phase fusion as it is
FROC_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
MEASURE_FLOOR = 0.1  # final-score variants are measured (size step) from here, below every preset


@dataclass(frozen=True)
class Preset:
    """A sensitivity preset of one input: its threshold depends on whether the scan lies outside
    the training ranges (:func:`..config.preset_threshold`)."""

    name: str
    with_phase: bool

    def threshold(self, out_of_range: bool) -> float:
        return preset_threshold(self.name, self.with_phase, out_of_range)

    def __str__(self) -> str:
        inside, outside = self.threshold(False), self.threshold(True)
        return f"{inside:g}" if inside == outside else f"{inside:g} ({outside:g} outside the training ranges)"


@dataclass
class ScanOutcome:
    """Per-variant detections of one test scan plus its ground truth."""

    gt_ras: np.ndarray
    gt_diam: np.ndarray
    variants: dict  # name -> (det_ras (N,3), det_scores (N,)) at threshold 0
    protocol: str = ""  # "3D SWI" or "2D GRE"; the family (protocol_family) on family-drawn sets
    candidate_hits: int = 0  # microbleeds with a candidate within radius + 2 mm, before suppression
    n_candidates: int = 0
    rule_rows: dict | None = None  # candidates YOLO scored: ras, diam, magnitude, with_phase, paramagnetic
    calc_ras: np.ndarray | None = None  # calcification centres
    mimics: dict | None = None  # final variants: what each detection lies on (:mod:`.mimics`)
    out_of_range: bool = False  # acquired outside the training ranges (:mod:`..trained_range`)
    oversized: dict = field(default_factory=dict)  # final variants: (ras, scores) of spots measured over 10 mm
    vein_gap: np.ndarray | None = None  # each microbleed's surface gap to the nearest vein's (mimics.vein_gaps)

    def threshold(self, threshold: float | Preset) -> float:
        """``threshold``, or the preset's threshold for this scan."""
        return threshold.threshold(self.out_of_range) if isinstance(threshold, Preset) else threshold

    def matched(self, variant: str, threshold: float | Preset) -> tuple[np.ndarray, np.ndarray]:
        """Which of ``variant``'s detections reach ``threshold`` (a mask) and the microbleed each of
        those hits (index, or -1), matched by :func:`match_detections`."""
        ras, scores = self.variants[variant]
        keep = scores >= self.threshold(threshold)
        return keep, match_detections(ras[keep], scores[keep], self.gt_ras, self.gt_diam)


VALIDATION_DRAWS = {"mid-slices": sample_mid_slice_protocol,  # protocol draws for choices
                    "shifted": sample_shifted_protocol}  # (validation seeds only)


def test_scan(n: int, seed0: int = TEST_SEED0, randomisation=None, draw: str | None = None, **render):
    """The n-th held-out synthetic scan (``seed0`` = VALIDATION_SEED0 for threshold tuning);
    ``randomisation`` (default: the engine's OFF) widens the engine (:mod:`..synth.randomisation`);
    ``draw`` "mid-slices" makes every scan a 3D SWI with slices between the trained regimes,
    "shifted" one of the shifted validation family (outside the training and stress ranges);
    ``render`` goes to ``generate_scan`` (its analysis renders)."""
    from ..synth import generate_scan, sample_protocol
    from ..synth.randomisation import OFF

    if draw is not None and draw not in VALIDATION_DRAWS:
        raise ValueError(f"unknown protocol draw {draw!r}; use one of {tuple(VALIDATION_DRAWS)}")
    seed = seed0 + n
    rng = np.random.default_rng(seed)
    if draw is not None:
        protocol = VALIDATION_DRAWS[draw](rng)
    else:
        protocol = sample_protocol(rng, kind="gre2d", field_strength_t=1.5) if n % 4 == 3 else None
    return generate_scan(seed, protocol=protocol, n_cmb=0 if n % 6 == 5 else None, randomisation=randomisation or OFF,
                         **render)


def protocol_family(protocol, families=STRESS_FAMILY) -> str:
    """The family a family-drawn protocol came from, e.g. "7 T, TE 8-12 ms" (``families``: the
    stress family unless given, e.g. ``SHIFTED_FAMILY``)."""
    for b0, (te0, te1), _ in families:
        if protocol.field_strength_t == b0 and te0 <= protocol.te_ms <= te1:
            return f"{b0:g} T, TE {te0:g}-{te1:g} ms"
    raise ValueError(f"{protocol} is not a protocol of these families")


def stress_scan(n: int, seed0: int = STRESS_SEED0, **render):
    """The n-th scan of the stress set: a stress-family protocol and the STRESS randomisation
    (every sixth scan without microbleeds); ``render`` goes to ``generate_scan``."""
    from ..synth import generate_scan
    from ..synth.randomisation import STRESS

    seed = seed0 + n
    protocol = sample_stress_protocol(np.random.default_rng(seed))
    return generate_scan(seed, protocol=protocol, n_cmb=0 if n % 6 == 5 else None, randomisation=STRESS, **render)


def evaluate_scan(scan, config: DetectorConfig) -> ScanOutcome:
    """Score every candidate once and keep the detections of each ablation variant: the stages
    in turn, the final fusions without the YOLO stage ("-noyolo", what the pipeline gives with
    it switched off) and the final ones; "+phase" variants also use the scan's phase image."""
    gt_ras, gt_diam = scan.cmb_truth()
    scored = score_candidates(scan.magnitude, scan.geometry, config, phase=scan.phase)
    variants, oversized = {}, {}
    response = scored.candidates.response
    magnitude = final_scores(scored, config.models_dir, use_phase=False)
    for name, scores, floor in (
        ("candidates", response, MIN_RESPONSE),
        ("cnn", scored.cnn, 0.0),
        ("cnn+yolo", (scored.cnn + np.nan_to_num(scored.yolo)) / 2, 0.0),  # plain mean, before the fusion
        ("fused-noyolo", final_scores(scored, config.models_dir, use_phase=False, use_yolo=False), 0.0),
        ("fused+phase-noyolo", final_scores(scored, config.models_dir, use_yolo=False), 0.0),
        ("fused", magnitude, 0.0),
        ("fused+phase", final_scores(scored, config.models_dir), 0.0),
    ):
        detections = select(scored, scores, floor).detections
        if name.startswith("fused"):
            detections, over = reported(scored, detections)
            oversized[name] = points(over)
        variants[name] = points(detections)
    hit = match_candidates(scored.pre.geometry.ijk_to_ras_points(scored.candidates.kji[:, ::-1]), gt_ras, gt_diam)
    hits = len(np.unique(hit[hit >= 0]))
    look = np.flatnonzero(np.isfinite(scored.yolo))
    rule_rows = {"ras": scored.pre.geometry.ijk_to_ras_points(scored.candidates.kji[look][:, ::-1]),
                 "diam": scored.candidates.diameter_mm[look], "magnitude": magnitude[look],
                 "with_phase": final_scores(scored, config.models_dir, rule=NO_RULE)[look],
                 "paramagnetic": scored.paramagnetic[look]}
    calc = np.array([o.center_ras for o in scan.objects if o.kind == "calcification"], float).reshape(-1, 3)
    mimics = {name: mimic_kinds(variants[name][0], scan.objects, scan.vessels) for name in ("fused", "fused+phase")}
    metadata = Acquisition(scan.protocol.field_strength_t, scan.protocol.te_ms)  # as a DICOM header gives them
    return ScanOutcome(gt_ras, gt_diam, variants, "2D GRE" if scan.protocol.kind == "gre2d" else "3D SWI",
                       hits, len(response), rule_rows, calc, mimics, bool(outside_training(scan.geometry, metadata)),
                       oversized, vein_gaps(gt_ras, gt_diam, scan.vessels))


def points(detections: list) -> tuple[np.ndarray, np.ndarray]:
    """RAS positions (N, 3) and scores (N,) of ``detections`` (select() stores the variant's score)."""
    return np.array([d.ras for d in detections]).reshape(-1, 3), np.array([d.score for d in detections])


def reported(scored, detections: list) -> tuple[list, list]:
    """What :func:`..pipeline.detect` reports of ``detections`` scoring >= ``MEASURE_FLOOR``: the
    size step (measured centres, a microbleed found twice merged), split into the microbleeds and
    the spots measured over 10 mm, which the table flags and no count includes."""
    prepared = scored.prepared
    kept = [d for d in detections if d.score >= MEASURE_FLOOR]
    measured = measure_detections(kept, prepared.array, prepared.geometry, prepared.mask)
    return [d for d in measured if d.is_microbleed], [d for d in measured if not d.is_microbleed]


def rule_variant(outcome: ScanOutcome, rule: PhaseRule) -> tuple[np.ndarray, np.ndarray]:
    """Detections (ras, scores) of the phase fusion bounded by ``rule``, at threshold 0 (NMS on
    the scored candidates, as :func:`..pipeline.select` does)."""
    rows = outcome.rule_rows
    scores = rule.apply(rows["with_phase"], rows["magnitude"], rows["paramagnetic"])
    keep = nms_3d(rows["ras"], scores, rows["diam"])
    return rows["ras"][keep], scores[keep]


def calcifications_reported(outcomes: list[ScanOutcome], variant: str, threshold: float | Preset,
                            reach_mm: float = 3.0) -> int:
    """Detections at or above ``threshold`` within ``reach_mm`` of a calcification centre."""
    n = 0
    for o in outcomes:
        ras, scores = o.variants[variant]
        ras = ras[scores >= o.threshold(threshold)]
        if len(ras) and len(o.calc_ras):
            n += int((np.linalg.norm(ras[:, None] - o.calc_ras[None], axis=2).min(1) <= reach_mm).sum())
    return n


def false_positive_mimics(outcomes: list[ScanOutcome], variant: str, threshold: float | Preset) -> dict[str, int]:
    """False positives of a final ``variant`` at ``threshold``, counted by what they lie on."""
    counts = dict.fromkeys(MIMICS, 0)
    for o in outcomes:
        keep, hit = o.matched(variant, threshold)
        for kind in o.mimics[variant][keep][hit < 0]:
            counts[kind] += 1
    return counts


def summarise(outcomes: list[ScanOutcome], variant: str, threshold: float | Preset,
              scan_threshold: float | None = None) -> dict:
    """Lesion and subject metrics of one variant at one threshold; a scan counts as positive when
    it has a detection (or, with ``scan_threshold``, when its best detection reaches that)."""
    tp = fp = n_gt = 0
    has_cmb, predicted, scan_scores = [], [], []
    for o in outcomes:
        scores = o.variants[variant][1]
        keep, matched = o.matched(variant, threshold)
        tp += int((matched >= 0).sum())
        fp += int((matched < 0).sum())
        n_gt += len(o.gt_ras)
        has_cmb.append(len(o.gt_ras) > 0)
        best = float(scores.max()) if len(scores) else 0.0
        predicted.append(bool(keep.any()) if scan_threshold is None else best >= scan_threshold)
        scan_scores.append(best)
    return {"lesion": lesion_metrics(tp, fp, n_gt, len(outcomes)),
            "subject": subject_metrics(np.array(has_cmb), np.array(predicted), np.array(scan_scores))}


def lost_to_size(outcomes: list[ScanOutcome], variant: str, threshold: float | Preset) -> int:
    """Microbleeds a final ``variant`` finds at ``threshold`` only as a spot the size step
    measured over 10 mm (listed for review, never counted): what that step costs."""
    lost = 0
    for o in outcomes:
        if variant not in o.oversized:
            continue
        found = o.matched(variant, threshold)[1]
        ras, scores = o.oversized[variant]
        keep = scores >= o.threshold(threshold)
        hit = match_detections(ras[keep], scores[keep], o.gt_ras, o.gt_diam)
        lost += len(set(hit[hit >= 0].tolist()) - set(found[found >= 0].tolist()))
    return lost


SIZE_BINS_MM = (1.5, 3.0)  # apparent diameters (with blooming, as the engine records them)


def _found_in_bins(outcomes: list[ScanOutcome], variant: str, threshold: float | Preset, labels: list[str],
                   bins_of) -> dict[str, tuple[int, int]]:
    """(found, total) microbleeds per bin for one variant at one threshold; ``bins_of(outcome)``
    gives each microbleed's bin index, or None to leave the outcome out."""
    found, total = np.zeros(len(labels), int), np.zeros(len(labels), int)
    for o in outcomes:
        bins = bins_of(o)
        if bins is None:
            continue
        matched = o.matched(variant, threshold)[1]
        np.add.at(total, bins, 1)
        np.add.at(found, bins[matched[matched >= 0]], 1)
    return {label: (int(f), int(t)) for label, f, t in zip(labels, found, total)}


def found_by_size(outcomes: list[ScanOutcome], variant: str, threshold: float | Preset,
                  edges=SIZE_BINS_MM) -> dict[str, tuple[int, int]]:
    """(found, total) microbleeds per apparent-diameter bin for one variant at one threshold."""
    labels = [f"< {edges[0]:g} mm"] + [f"{lo:g}-{hi:g} mm" for lo, hi in zip(edges, edges[1:])] + [f">= {edges[-1]:g} mm"]
    return _found_in_bins(outcomes, variant, threshold, labels,
                          lambda o: np.searchsorted(edges, np.asarray(o.gt_diam, float), side="right"))


NEAR_VEIN_MM = 2.0  # surface to surface: a microbleed this close to a vein can read as the vein's dot


def found_near_veins(outcomes: list[ScanOutcome], variant: str, threshold: float | Preset,
                     reach: float = NEAR_VEIN_MM) -> dict[str, tuple[int, int]]:
    """(found, total) microbleeds within ``reach`` of a vein and farther, for one variant at one
    threshold (outcomes without vein gaps are left out)."""
    return _found_in_bins(outcomes, variant, threshold, ["near a vein", "elsewhere"],
                          lambda o: None if o.vein_gap is None else (np.asarray(o.vein_gap) > reach).astype(int))


def froc(outcomes: list[ScanOutcome], variant: str, thresholds=FROC_THRESHOLDS) -> list[tuple[float, float, float]]:
    """(threshold, false positives per scan, sensitivity) points."""
    points = []
    for t in thresholds:
        lesion = summarise(outcomes, variant, t)["lesion"]
        points.append((t, lesion["fp_per_scan"], lesion["sensitivity"]))
    return points
