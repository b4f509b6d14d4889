"""Size and centre accuracy on held-out synthetic scans (not a test: it prints figures).

    nice -n 19 python scripts/benchmark_size.py [--n 12] [--validation] [--true-centres-only] [--workers 1]

For each scan, the apparent diameter (``CMBDetectorLib.size``) is measured (a) at every true
microbleed centre moved by up to 1 mm, as a detector would place it, and (b) for the final
detections (magnitude + phase pipeline at its balanced threshold) matched to a true microbleed,
before (detector filter scale, working-grid position) and after the measurement. Error is
measured minus the engine's apparent-size truth (``SyntheticObject.diameter_mm``); rows split
3D SWI and 2D GRE. ``--validation`` uses the validation seeds (for choosing constants).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from CMBDetectorLib.config import DetectorConfig  # noqa: E402
from CMBDetectorLib.evaluation.benchmark import TEST_SEED0, VALIDATION_SEED0, points, test_scan  # noqa: E402
from CMBDetectorLib.evaluation.metrics import match_detections  # noqa: E402
from CMBDetectorLib.results import MAX_CMB_MM  # noqa: E402
from CMBDetectorLib.size import measure_detections, measure_spot  # noqa: E402

JITTER_MM = 1.0


def evaluate(n: int, seed0: int, detect: bool) -> dict:
    """Errors (measured - truth diameter, centre distance) of one scan, per method."""
    import torch

    torch.set_num_threads(1)
    scan = test_scan(n, seed0)
    kind = "2D GRE" if scan.protocol.kind == "gre2d" else "3D SWI"
    gt_ras, gt_diam = scan.cmb_truth()
    rng = np.random.default_rng(seed0 + n)
    out = {"kind": kind, "true": [], "before": [], "after": [], "flagged_fp": 0, "fp": 0}
    for centre, diameter in zip(gt_ras, gt_diam):
        start = centre + rng.uniform(-JITTER_MM, JITTER_MM, 3)
        spot = measure_spot(scan.magnitude, scan.geometry, start)
        if spot is not None:
            out["true"].append((spot.diameter_mm - diameter, float(np.linalg.norm(np.subtract(spot.ras, centre))),
                                spot.diameter_mm))
    if not detect:
        return out
    from CMBDetectorLib.pipeline import final_scores, score_candidates, select

    config = DetectorConfig()
    scored = score_candidates(scan.magnitude, scan.geometry, config, phase=scan.phase)
    result = select(scored, final_scores(scored, config.models_dir), config.threshold_for(True))
    prepared = scored.prepared
    measured = measure_detections(result.detections, prepared.array, prepared.geometry, prepared.mask)
    for name, dets in (("before", result.detections), ("after", measured)):
        matched = match_detections(*points(dets), gt_ras, gt_diam)
        for det, m in zip(dets, matched):
            if m >= 0:
                out[name].append((det.diameter_mm - gt_diam[m], float(np.linalg.norm(np.subtract(det.ras, gt_ras[m]))),
                                  det.diameter_mm))
            elif name == "after":
                out["fp"] += 1
                out["flagged_fp"] += int(not det.is_microbleed)
    return out


def row(label: str, errors: list) -> str:
    if not errors:
        return f"| {label} | 0 | | | | |"
    e = np.asarray(errors)
    return (f"| {label} | {len(e)} | {np.median(np.abs(e[:, 0])):.2f} | {np.median(e[:, 0]):+.2f} | "
            f"{np.percentile(np.abs(e[:, 0]), 90):.2f} | {np.median(e[:, 1]):.2f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=12, help="held-out scans")
    parser.add_argument("--validation", action="store_true", help="validation seeds instead of test seeds")
    parser.add_argument("--true-centres-only", action="store_true", help="skip the detector (fast)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    seed0 = VALIDATION_SEED0 if args.validation else TEST_SEED0
    job = partial(evaluate, seed0=seed0, detect=not args.true_centres_only)
    results = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for n, result in enumerate(pool.map(job, range(args.n))):
            results.append(result)
            errors = [round(e[0], 2) for e in result["after" if result["after"] else "true"]]
            print(f"[size] scan {n + 1}/{args.n} ({result['kind']}): size errors {errors}", flush=True)
    print(f"Size benchmark, {'validation' if args.validation else 'test'} seeds, {args.n} scans. Error = measured "
          "- true apparent diameter (mm); centre = distance to the true centre (mm).\n")
    print("| Method, protocol | Microbleeds | Median abs. error | Median error | 90th pct abs. error | Median centre error |")
    print("|---|---|---|---|---|---|")
    methods = [("true", f"Measured at true centre +- {JITTER_MM:.0f} mm")]
    if not args.true_centres_only:
        methods += [("before", "Detector filter scale (before)"), ("after", "Measured, matched detections")]
    for key, label in methods:
        for kind in ("3D SWI", "2D GRE"):
            print(row(f"{label}, {kind}", [e for r in results if r["kind"] == kind for e in r[key]]))
    if not args.true_centres_only:
        fp, flagged = sum(r["fp"] for r in results), sum(r["flagged_fp"] for r in results)
        lost = sum(e[2] > MAX_CMB_MM for r in results for e in r["after"])
        print(f"\nTrue microbleeds detected but measured > {MAX_CMB_MM:.0f} mm (wrongly not counted): {lost}. "
              f"Unmatched detections: {fp}, of which flagged > {MAX_CMB_MM:.0f} mm (not counted): {flagged}.")


if __name__ == "__main__":
    main()
