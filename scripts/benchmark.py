"""Detector benchmark on held-out synthetic scans (not a test: it prints figures).

    python scripts/benchmark.py [--n 24] [--device auto] [--readme]

Prints lesion-level (sensitivity, precision, F1, FP/scan, FROC) and subject-level (balanced
accuracy, AUC, precision, sensitivity, F1) figures for five ablation rows (candidates only,
+ 3D CNN, + CNN + YOLO averaged, + score fusion = the pipeline on magnitude alone, + phase
evidence = the pipeline on magnitude and phase), the presets and a per-protocol split for both
inputs, then per-stage runtime and peak memory of one 256x256x128 scan in a fresh process. Writes docs/benchmark.json and docs/BENCHMARK.md; --readme also refreshes the
README's benchmark section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from CMBDetectorLib.config import SCAN_THRESHOLD, SENSITIVITY_PRESETS, DetectorConfig, preset_threshold  # noqa: E402
from CMBDetectorLib.evaluation.benchmark import (  # noqa: E402
    FROC_THRESHOLDS, TEST_SEED0, VALIDATION_SEED0, evaluate_scan, froc, summarise, test_scan)
from CMBDetectorLib.evaluation.location import evaluate_location, location_text, summarise_location  # noqa: E402
from CMBDetectorLib.geometry import write_image  # noqa: E402

VARIANTS = {"candidates": "Candidates only", "cnn": "+ 3D CNN", "cnn+yolo": "+ 3D CNN + YOLO (mean)",
            "fused": "+ 3D CNN + YOLO + score fusion (final, magnitude only)",
            "fused+phase": "+ phase evidence (final, magnitude + phase)"}
FINAL = {"fused": "magnitude only", "fused+phase": "magnitude + phase"}
START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
LOCATION_THREADS = 2  # SimpleITK threads of the location stage (the "2 cores")


def profile_scan_data():
    """The profile's synthetic 256x256x128 3 T SWI scan (also used by scripts/benchmark_worker.py)."""
    from CMBDetectorLib.synth import generate_scan, sample_protocol

    protocol = sample_protocol(np.random.default_rng(TEST_SEED0 - 1), kind="swi3d", field_strength_t=3.0)
    protocol = dataclasses.replace(protocol, shape=(256, 256, 128))
    return generate_scan(TEST_SEED0 - 1, protocol=protocol)


def profile_scan(device: str, models_dir: Path, with_phase: bool) -> dict:
    """Runtime and peak RSS of ``detect`` on a 256x256x128 SWI scan, in a fresh process."""
    scan = profile_scan_data()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.nii.gz"
        write_image(path, scan.magnitude, scan.geometry)
        cmd = [sys.executable, "-m", "CMBDetectorLib.evaluation.profile", str(path), "--device", device,
               "--models-dir", str(models_dir)]
        if with_phase:
            write_image(Path(tmp) / "phase.nii.gz", scan.phase, scan.geometry)
            cmd += ["--phase", str(Path(tmp) / "phase.nii.gz")]
        out = subprocess.run(cmd, cwd=ROOT / "CMBDetector", capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "CMBDetector")})
    return json.loads(out.stdout.strip().splitlines()[-1])


def evaluate_nth(n: int, seed0: int, config: DetectorConfig):
    """Outcome and protocol of the n-th held-out scan (one worker process, one torch thread)."""
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(1)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(LOCATION_THREADS)
    scan = test_scan(n, seed0)
    return evaluate_scan(scan, config), scan.protocol, evaluate_location(scan)


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def report(results: dict) -> str:
    lines = [f"Held-out synthetic test set: {results['n_scans']} scans "
             f"({results['n_gre2d_15t']} 2D GRE 1.5 T, {results['n_negative']} without microbleeds, "
             f"{results['n_lesions']} microbleeds); each row at its input's default (\"balanced\") threshold: "
             + ", ".join(f"{FINAL[k]} {t}" for k, t in results["thresholds"].items()) + ". Subject level: a scan "
             "is positive when it has a detection, except in the scan-level call rows.", "",
             "| Stage | Lesion sens. | Precision | F1 | FP/scan | Subj. bal. acc. | AUC | Subj. prec. | Subj. sens. | Subj. F1 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, name in VARIANTS.items():
        les, sub = results["rows"][key]["lesion"], results["rows"][key]["subject"]
        lines.append(f"| {name} | {fmt(les['sensitivity'])} | {fmt(les['precision'])} | {fmt(les['f1'])} | "
                     f"{les['fp_per_scan']:.2f} | {fmt(sub['balanced_accuracy'])} | {fmt(sub['auc'])} | "
                     f"{fmt(sub['precision'])} | {fmt(sub['sensitivity'])} | {fmt(sub['f1'])} |")
    for key, row in results["scan_call"].items():
        sub = row["subject"]
        lines.append(f"| Scan-level call, {FINAL[key]} (best score >= {row['threshold']}) | | | | | "
                     f"{fmt(sub['balanced_accuracy'])} | {fmt(sub['auc'])} | {fmt(sub['precision'])} | "
                     f"{fmt(sub['sensitivity'])} | {fmt(sub['f1'])} |")
    lines += ["", f"Candidate screen recall (a candidate within radius + 2 mm of the microbleed, before any "
              f"suppression): {fmt(results['candidate_recall'])} ({results['candidate_hits']}/{results['n_lesions']}), "
              f"{results['candidates_per_scan']:.0f} candidates per scan on average. The candidates-only row "
              f"applies 3D non-maximum suppression by blob strength, which can hide a microbleed behind a "
              f"stronger neighbour.",
              "", "Final pipeline at each sensitivity preset of the panel:", "",
              "| Input | Preset | Threshold | Lesion sens. | Precision | FP/scan | Subj. bal. acc. | Subj. prec. | Subj. F1 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for key, inputs in FINAL.items():
        for name, row in results["presets"][key].items():
            les, sub = row["lesion"], row["subject"]
            lines.append(f"| {inputs} | {name} | {row['threshold']} | {fmt(les['sensitivity'])} | "
                         f"{fmt(les['precision'])} | {les['fp_per_scan']:.2f} | {fmt(sub['balanced_accuracy'])} | "
                         f"{fmt(sub['precision'])} | {fmt(sub['f1'])} |")
    for key, inputs in FINAL.items():
        lines += ["", f"Final pipeline ({inputs}) by protocol, default threshold: " + "; ".join(
            f"{kind}: {row['n_scans']} scans, {row['lesion']['n_lesions']} microbleeds, sensitivity "
            f"{fmt(row['lesion']['sensitivity'])} at {row['lesion']['fp_per_scan']:.2f} FP/scan"
            for kind, row in results["protocols"][key].items()) + "."]
    lines.append("")
    for key, points in results["froc"].items():
        lines.append(f"FROC, {VARIANTS[key]} (threshold: FP/scan, sensitivity): " + "; ".join(
            f"{t:.2f}: {fp:.2f}, {fmt(s)}" for t, fp, s in points) + "\n")
    for key, rows in results["subject_sweep"].items():
        lines.append(f"Subject level by the best detection's score, {FINAL[key]} (threshold: balanced accuracy, "
                     "precision, sensitivity, F1): " + "; ".join(
                         f"{t:.2f}: {fmt(r['balanced_accuracy'])}, {fmt(r['precision'])}, {fmt(r['sensitivity'])}, "
                         f"{fmt(r['f1'])}" for t, r in rows) + "\n")
    lines += [location_text(results["location"]), ""]
    for prof in results["profiles"]:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in prof["stages_s"].items())
        inputs = "magnitude + phase" if prof["phase"] else "magnitude"
        lines.append(f"Runtime, {prof['shape_ijk'][0]}x{prof['shape_ijk'][1]}x{prof['shape_ijk'][2]} SWI ({inputs}) on "
                     f"{prof['device']} ({prof['machine']}): {prof['total_s']:.1f} s ({stages}); "
                     f"peak RSS {prof['peak_rss_mb'] / 1024:.2f} GB.")
    return "\n".join(lines) + "\n"


def update_readme(text: str) -> None:
    readme = ROOT / "README.md"
    body = readme.read_text()
    if START in body and END in body:
        head, rest = body.split(START, 1)
        readme.write_text(head + START + "\n" + text + END + rest.split(END, 1)[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=24, help="held-out scans")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--validation", action="store_true",
                        help="use the validation seeds (for tuning the threshold), not the test seeds")
    parser.add_argument("--no-profile", action="store_true", help="skip the runtime / memory profile")
    parser.add_argument("--workers", type=int, default=2, help="scans evaluated in parallel")
    parser.add_argument("--models-dir", type=Path, default=None, help="weights to test (default: shipped)")
    parser.add_argument("--readme", action="store_true", help="refresh the README's benchmark section")
    args = parser.parse_args(argv)
    config = DetectorConfig(device=args.device)
    thresholds = {key: preset_threshold("balanced", key == "fused+phase") for key in FINAL}
    if args.models_dir:
        config.models_dir = args.models_dir.resolve()
    outcomes, locations, n_gre = [], [], 0
    t0 = time.perf_counter()
    seed0 = VALIDATION_SEED0 if args.validation else TEST_SEED0
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for n, (outcome, protocol, located) in enumerate(pool.map(partial(evaluate_nth, seed0=seed0, config=config),
                                                                  range(args.n))):
            n_gre += protocol.kind == "gre2d" and protocol.field_strength_t == 1.5
            outcomes.append(outcome)
            locations.append(located)
            print(f"[benchmark] scan {n + 1}/{args.n}: {len(outcome.gt_ras)} CMBs, {protocol.kind} "
                  f"{protocol.field_strength_t} T ({time.perf_counter() - t0:.0f} s)", flush=True)
    import torch

    machine = f"{os.cpu_count()} CPU cores"
    devices = [("cpu", machine)] + ([("cuda", torch.cuda.get_device_name(0))] if torch.cuda.is_available() else [])
    profiles = [] if args.no_profile else [dict(profile_scan(device, config.models_dir, with_phase), machine=name)
                                           for device, name in devices for with_phase in (False, True)]
    results = {
        "seeds": "validation" if args.validation else "test", "n_scans": len(outcomes), "n_gre2d_15t": int(n_gre),
        "n_negative": sum(len(o.gt_ras) == 0 for o in outcomes),
        "n_lesions": int(sum(len(o.gt_ras) for o in outcomes)), "thresholds": thresholds,
        "candidate_hits": sum(o.candidate_hits for o in outcomes),
        "candidate_recall": sum(o.candidate_hits for o in outcomes) / max(1, sum(len(o.gt_ras) for o in outcomes)),
        "candidates_per_scan": float(np.mean([o.n_candidates for o in outcomes])),
        "rows": {v: summarise(outcomes, v, -np.inf if v == "candidates" else thresholds.get(v, thresholds["fused"]))
                 for v in VARIANTS},
        "scan_call": {key: {"threshold": SCAN_THRESHOLD, **summarise(outcomes, key, thresholds[key], SCAN_THRESHOLD)}
                      for key in FINAL},
        "presets": {key: {name: {"threshold": (t := preset_threshold(name, key == "fused+phase")),
                                 **summarise(outcomes, key, t)} for name in SENSITIVITY_PRESETS} for key in FINAL},
        "protocols": {key: {kind: {"n_scans": len(subset), **summarise(subset, key, thresholds[key])}
                            for kind in ("3D SWI", "2D GRE")
                            if (subset := [o for o in outcomes if o.protocol == kind])} for key in FINAL},
        "froc": {v: froc(outcomes, v) for v in ("cnn", "cnn+yolo", "fused", "fused+phase")},
        "subject_sweep": {key: [(t, summarise(outcomes, key, t)["subject"]) for t in FROC_THRESHOLDS] for key in FINAL},
        "profiles": profiles,
        "location": {"threads": LOCATION_THREADS, **summarise_location(locations)}}
    text = report(results)
    print(text)
    if args.validation:
        return
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "benchmark.json").write_text(json.dumps(results, indent=1, default=float))
    (docs / "BENCHMARK.md").write_text("# Benchmark\n\nMade by `python scripts/benchmark.py`.\n\n" + text)
    if args.readme:
        update_readme(text)


if __name__ == "__main__":
    main()
