"""Detector benchmark on held-out synthetic scans (not a test: it prints figures).

    python scripts/benchmark.py [--n 24] [--device auto] [--stress] [--readme]

Prints lesion-level (sensitivity, precision, F1, FP/scan, FROC) and subject-level (balanced
accuracy, AUC, precision, sensitivity, F1) figures for five ablation rows (candidates only,
+ 3D CNN, + CNN + YOLO averaged, + score fusion = the pipeline on magnitude alone, + phase
evidence = the pipeline on magnitude and phase), the presets and a per-protocol split for both
inputs, the calibration of the final scores per input (reliability table, ECE), then
per-stage runtime and peak memory of one 256x256x128 scan in a fresh process. --stress adds the
same final rows for the stress set (protocols outside the training ranges) beside the
in-distribution rows and draws both FROC curves in docs/images/froc.png. --validation also prints
the sweep that chooses the phase rule (CMBDetectorLib/phase_rule.py). Writes docs/benchmark.json
and docs/BENCHMARK.md (--out-dir elsewhere); --readme also refreshes the README's benchmark section.
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

from CMBDetectorLib.config import SCAN_THRESHOLD, SENSITIVITY_PRESETS, DetectorConfig  # noqa: E402
from CMBDetectorLib.evaluation.benchmark import (  # noqa: E402
    FROC_THRESHOLDS, NEAR_VEIN_MM, NO_RULE, STRESS_SEED0, TEST_SEED0, VALIDATION_SEED0, Preset, calcifications_reported,
    evaluate_scan, false_positive_mimics, found_by_size, found_near_veins, froc, lost_to_size, protocol_family,
    rule_variant, stress_scan, summarise, test_scan)
from CMBDetectorLib.evaluation.calibration import detection_labels, reliability  # noqa: E402
from CMBDetectorLib.evaluation.metrics import match_candidates  # noqa: E402
from CMBDetectorLib.evaluation.location import evaluate_location, location_text, summarise_location  # noqa: E402
from CMBDetectorLib.evaluation.mimics import MIMICS  # noqa: E402
from CMBDetectorLib.geometry import write_image  # noqa: E402
from CMBDetectorLib.phase_rule import PHASE_RULE, PhaseRule  # noqa: E402
from CMBDetectorLib.synth.acquisition import MID_SLICES_MM, SHIFTED_FAMILY, STRESS_FAMILY  # noqa: E402
from CMBDetectorLib.synth.randomisation import WIDE  # noqa: E402
from CMBDetectorLib.trained_range import TRAINED_SLICES_MM  # noqa: E402

VARIANTS = {"candidates": "Candidates only", "cnn": "+ 3D CNN", "cnn+yolo": "+ 3D CNN + YOLO (mean)",
            "fused-noyolo": "3D CNN + score fusion, no YOLO stage (magnitude only)",
            "fused": "+ 3D CNN + YOLO + score fusion (final, magnitude only)",
            "fused+phase-noyolo": "3D CNN + phase evidence, no YOLO stage (magnitude + phase)",
            "fused+phase": "+ phase evidence (final, magnitude + phase)"}
FINAL = {"fused": "magnitude only", "fused+phase": "magnitude + phase"}
NO_YOLO = {"fused-noyolo": "magnitude only, no YOLO stage", "fused+phase-noyolo": "magnitude + phase, no YOLO stage"}
START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
LOCATION_THREADS = 2  # SimpleITK threads of the location stage (the "2 cores")
MID_SLICES = "{}-{} mm slices".format(*MID_SLICES_MM)  # the --mid-slices validation draw
SHIFTED = "; ".join(f"{b0:g} T TE {te0:g}-{te1:g} ms {s0:g}-{s1:g} mm" for b0, (te0, te1), (s0, s1) in SHIFTED_FAMILY)
DRAW_LABELS = {"mid-slices": f"3D {MID_SLICES}", "shifted": f"shifted: {SHIFTED}"}  # the seeds line of each draw
TRAINED_SLICES = ", ".join(f"{lo:g}-{hi:g} mm {kind}" for kind, (lo, hi) in TRAINED_SLICES_MM.items())


def profile_scan_data():
    """The profile's synthetic 256x256x128 3 T SWI scan (also used by scripts/benchmark_worker.py)."""
    from CMBDetectorLib.synth import generate_scan, sample_protocol

    protocol = sample_protocol(np.random.default_rng(TEST_SEED0 - 1), kind="swi3d", field_strength_t=3.0)
    protocol = dataclasses.replace(protocol, shape=(256, 256, 128))
    return generate_scan(TEST_SEED0 - 1, protocol=protocol)


def write_profile_scan(folder: Path, with_phase: bool) -> tuple[Path, Path | None]:
    """The profile scan's magnitude (and phase) as NIfTI files in ``folder``."""
    scan = profile_scan_data()
    image = Path(folder) / "profile.nii.gz"
    write_image(image, scan.magnitude, scan.geometry)
    if not with_phase:
        return image, None
    write_image(Path(folder) / "phase.nii.gz", scan.phase, scan.geometry)
    return image, Path(folder) / "phase.nii.gz"


def run_profile(image: Path, phase: Path | None, device: str = "cpu", models_dir: Path | None = None,
                checkout: Path = ROOT) -> dict:
    """Runtime and peak RSS of ``detect`` on ``image`` with ``checkout``'s code (and its shipped
    models unless ``models_dir``), in a fresh process."""
    cmd = [sys.executable, "-m", "CMBDetectorLib.evaluation.profile", str(image), "--device", device]
    if models_dir is not None:
        cmd += ["--models-dir", str(models_dir)]
    if phase is not None:
        cmd += ["--phase", str(phase)]
    out = subprocess.run(cmd, cwd=checkout / "CMBDetector", capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(checkout / "CMBDetector")})
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile_scan(device: str, models_dir: Path, with_phase: bool) -> dict:
    """Runtime and peak RSS of ``detect`` on a 256x256x128 SWI scan, in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        return run_profile(*write_profile_scan(Path(tmp), with_phase), device, models_dir)


def evaluate_nth(n: int, seed0: int, config: DetectorConfig, stress: bool = False, wide: bool = False,
                 draw: str | None = None):
    """Outcome, protocol and location figures (None for the stress set) of the n-th held-out (or
    stress) scan, drawn with the engine's WIDE randomisation when ``wide`` and with a validation
    protocol ``draw`` (:data:`VALIDATION_DRAWS`) when given (one worker process, one torch thread)."""
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(1)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(LOCATION_THREADS)
    scan = stress_scan(n, seed0) if stress else test_scan(n, seed0, WIDE if wide else None, draw)
    outcome = evaluate_scan(scan, config)
    if stress or draw == "shifted":
        outcome.protocol = protocol_family(scan.protocol, STRESS_FAMILY if stress else SHIFTED_FAMILY)
    return outcome, scan.protocol, None if stress else evaluate_location(scan)


def evaluate_set(n_scans: int, seed0: int, config: DetectorConfig, workers: int, stress: bool = False,
                 wide: bool = False, first: int = 0, draw: str | None = None):
    """Outcomes and location figures of ``n_scans`` scans from the ``first``-th after ``seed0``, and
    how many are 1.5 T 2D GRE."""
    outcomes, locations, n_gre = [], [], 0
    t0 = time.perf_counter()
    name = "stress" if stress else "benchmark"
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for n, (outcome, protocol, located) in enumerate(pool.map(
                partial(evaluate_nth, seed0=seed0, config=config, stress=stress, wide=wide, draw=draw),
                range(first, first + n_scans))):
            n_gre += protocol.kind == "gre2d" and protocol.field_strength_t == 1.5
            outcomes.append(outcome)
            locations.append(located)
            print(f"[{name}] scan {n + 1}/{n_scans}: {len(outcome.gt_ras)} CMBs, {protocol.kind} "
                  f"{protocol.field_strength_t} T TE {protocol.te_ms} ms, {protocol.spacing_mm[2]} mm slices "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return outcomes, locations, n_gre


def stage_threshold(variant: str, thresholds: dict) -> float | Preset:
    """Threshold of an ablation row: none for the candidates, the phase preset for the phase
    variants, the magnitude-only one for the rest."""
    if variant == "candidates":
        return -np.inf
    return thresholds["fused+phase" if variant.startswith("fused+phase") else "fused"]


def final_rows(outcomes: list, thresholds: dict) -> dict:
    """The final pipeline's rows (both inputs, default thresholds), FROC and calibration, the
    phase row without the physics rule (what the rule changes), and every ablation row with the
    candidate screen's recall."""
    for o in outcomes:
        o.variants["no_rule"] = rule_variant(o, NO_RULE)
    no_rule = thresholds["fused+phase"]
    n_lesions = int(sum(len(o.gt_ras) for o in outcomes))
    stages = {v: summarise(outcomes, v, stage_threshold(v, thresholds)) for v in VARIANTS}
    return {"no_rule": {**summarise(outcomes, "no_rule", no_rule),
                        "calcifications_reported": calcifications_reported(outcomes, "no_rule", no_rule)},
            "n_scans": len(outcomes), "n_lesions": n_lesions, "stages": stages,
            "candidate_hits": sum(o.candidate_hits for o in outcomes),
            "candidate_recall": sum(o.candidate_hits for o in outcomes) / max(1, n_lesions),
            "rows": {key: stages[key] for key in FINAL},
            "by_size": {key: found_by_size(outcomes, key, thresholds[key]) for key in FINAL},
            "lost_to_size": {key: lost_to_size(outcomes, key, thresholds[key]) for key in FINAL},
            "near_veins": {key: found_near_veins(outcomes, key, thresholds[key]) for key in FINAL},
            "froc": {key: froc(outcomes, key) for key in (*FINAL, *NO_YOLO)},
            "calibration": {key: dataclasses.asdict(reliability(*detection_labels(outcomes, key))) for key in FINAL},
            "calcifications_reported": {key: calcifications_reported(outcomes, key, thresholds[key]) for key in FINAL},
            "false_positive_mimics": {key: {preset: {"threshold": str(t), "counts": false_positive_mimics(outcomes, key, t)}
                                            for preset, t in (("balanced", thresholds[key]),
                                                              ("high", Preset("high", key == "fused+phase")))}
                                      for key in FINAL},
            "protocols": {key: {kind: {"n_scans": len(subset), **summarise(subset, key, thresholds[key])}
                                for kind in sorted({o.protocol for o in outcomes}, key=protocol_order)
                                if (subset := [o for o in outcomes if o.protocol == kind])} for key in FINAL}}


def protocol_order(kind: str) -> tuple:
    """3D SWI before 2D GRE; the stress families by field strength."""
    return ({"3D SWI": 0, "2D GRE": 1}.get(kind, 2), kind)


def protocol_lines(res: dict, prefix: str) -> list[str]:
    """The final pipeline per protocol (or stress family), default thresholds; a paragraph each."""
    lines = []
    for key, inputs in FINAL.items():
        lines += ["", f"Final pipeline ({prefix}{inputs}) by protocol, default threshold: " + "; ".join(
            f"{kind}: {row['n_scans']} scans, {row['lesion']['n_lesions']} microbleeds, sensitivity "
            f"{fmt(row['lesion']['sensitivity'])} at {row['lesion']['fp_per_scan']:.2f} FP/scan"
            for kind, row in res["protocols"][key].items()) + "."]
    return lines


def rule_sweep(outcomes: list) -> str:
    """Validation only: how candidate phase rules move the phase fusion's FROC, how many
    calcifications they leave above the lowest preset, and how low matched microbleeds' paramagnetic
    scores go (the cut-off must stay below them)."""
    para = []
    for o in outcomes:
        rows = o.rule_rows
        hit = match_candidates(rows["ras"], o.gt_ras, o.gt_diam) >= 0
        para.append(rows["paramagnetic"][hit & (rows["with_phase"] >= min(FROC_THRESHOLDS))])
    para = np.concatenate(para)
    lines = [f"Phase-rule sweep ({len(outcomes)} validation scans): paramagnetic score of the {len(para)} candidates "
             f"on microbleeds scoring >= {min(FROC_THRESHOLDS)}: min {para.min():.2f}, 1 % {np.quantile(para, 0.01):.2f}, "
             f"5 % {np.quantile(para, 0.05):.2f}, median {np.median(para):.2f}." if len(para) else "No matched microbleeds.",
             "", "| Cut-off | Phase may raise | Calcif. >= 0.2 | FROC (threshold: FP/scan, sensitivity) |", "|---|---|---|---|"]
    for cutoff in (-np.inf, -0.1, -0.2, -0.3, -0.4, -0.5, -0.6):
        for may_raise in (True, False):
            rule = PhaseRule(cutoff, may_raise)
            for o in outcomes:
                o.variants["rule"] = rule_variant(o, rule)
            points = "; ".join(f"{t:.2f}: {fp:.2f}, {fmt(sens)}" for t, fp, sens in froc(outcomes, "rule"))
            lines.append(f"| {cutoff} | {may_raise} | {calcifications_reported(outcomes, 'rule', 0.2)} | {points} |")
    lines.append(f"\nIn force: {PHASE_RULE}; without any rule (the phase fusion alone) see the first row.")
    return "\n".join(lines) + "\n"


def size_lines(res: dict, prefix: str) -> list[str]:
    """Microbleeds found per apparent-diameter bin and near a vein or not, final pipeline at the
    default thresholds."""
    lines = ["", *(f"Found by apparent diameter, {prefix}{inputs}, default threshold: " + "; ".join(
        f"{label} {found}/{total}" for label, (found, total) in res["by_size"][key].items()) + "."
        for key, inputs in FINAL.items()),
        "", f"Microbleeds found only as a spot the size step measured over 10 mm (listed, not counted), {prefix}"
        "default threshold: " + "; ".join(f"{inputs} {res['lost_to_size'][key]}" for key, inputs in FINAL.items()) + "."]
    for key, inputs in FINAL.items():
        lines += ["", f"Found near a vein (surface within {NEAR_VEIN_MM:g} mm of a vein's) and elsewhere, {prefix}{inputs}, "
                  "default threshold: " + "; ".join(f"{label} {found}/{total}" for label, (found, total)
                                                   in res["near_veins"][key].items()) + "."]
    return lines


def mimic_lines(res: dict, prefix: str) -> list[str]:
    """False positives of the final pipeline by what they lie on, at the balanced and high presets."""
    lines = []
    for key, inputs in FINAL.items():
        rows = res["false_positive_mimics"][key]
        presets = " / ".join(f"{name} preset {row['threshold']}" for name, row in rows.items())
        lines += ["", f"False positives by what they lie on, {prefix}{inputs} ({presets}; {res['n_scans']} scans): "
                  + "; ".join(f"{kind} " + " / ".join(str(row["counts"][kind]) for row in rows.values())
                              for kind in MIMICS) + "."]
    return lines


def stress_report(results: dict) -> str:
    """In-distribution and stress rows side by side (the gap is the figure to shrink)."""
    sets = {"in-distribution test": results, "stress": results["stress"]}
    lines = ["", "Generalisation: the stress set (seeds 900 000+) uses protocols outside every training range "
             "(7 T TE 8-12 ms or 3 T TE 45-55 ms, 3D SWI with 2.5-3 mm slices) and the engine's STRESS randomisation "
             "(through-slice veins, 2-2.5x medullary veins, microbleed-like calcifications, 1-1.6 mm microbleeds, "
             "atrophy, larger bias, ringing, motion, partial coverage). Final pipeline, default thresholds:", "",
             "| Set | Input | Scans | Microbleeds | Lesion sens. | FP/scan | Calcif. reported | ECE |",
             "|---|---|---|---|---|---|---|---|"]
    for name, res in sets.items():
        for key, inputs in FINAL.items():
            les = res["rows"][key]["lesion"]
            lines.append(f"| {name} | {inputs} | {res['n_scans']} | {res['n_lesions']} | {fmt(les['sensitivity'])} | "
                         f"{les['fp_per_scan']:.2f} | {res['calcifications_reported'][key]} | "
                         f"{fmt(res['calibration'][key]['ece'])} |")
        les = res["no_rule"]["lesion"]
        lines.append(f"| {name} | magnitude + phase without the phase rule | {res['n_scans']} | {res['n_lesions']} | "
                     f"{fmt(les['sensitivity'])} | {les['fp_per_scan']:.2f} | "
                     f"{res['no_rule']['calcifications_reported']} | |")
    lines += ["", "Ablation on both sets, default thresholds (candidate screen recall: in-distribution "
              f"{fmt(results['candidate_recall'])}, stress {fmt(results['stress']['candidate_recall'])}; the "
              "no-YOLO rows are the pipeline with the YOLO stage switched off, its fusions fitted on the same rows "
              "without the YOLO column):", "",
              "| Stage | Test sens. | Test FP/scan | Stress sens. | Stress FP/scan |", "|---|---|---|---|---|"]
    for key, name in VARIANTS.items():
        cells = [(res["stages"][key]["lesion"]["sensitivity"], res["stages"][key]["lesion"]["fp_per_scan"])
                 for res in sets.values()]
        lines.append(f"| {name} | " + " | ".join(f"{fmt(sens)} | {fp:.2f}" for sens, fp in cells) + " |")
    lines += size_lines(results["stress"], "stress set, ")
    lines += mimic_lines(results["stress"], "stress set, ")
    lines += protocol_lines(results["stress"], "stress set, ")
    for key, inputs in {**FINAL, **NO_YOLO}.items():
        lines.append(f"\nFROC, stress set, {inputs} (threshold: FP/scan, sensitivity): " + "; ".join(
            f"{t:.2f}: {fp:.2f}, {fmt(s)}" for t, fp, s in results["stress"]["froc"][key]))
    return "\n".join(lines) + "\n"


def calibration_report(results: dict) -> str:
    lines = ["", f"Calibration of the final score (detections scoring >= 0.1; per bin: count, mean score, "
             "fraction on microbleeds):"]
    for name, res in (("in-distribution test", results), ("stress", results.get("stress"))):
        if res is None:
            continue
        for key, inputs in FINAL.items():
            cal = res["calibration"][key]
            bins = "; ".join(f"{lo:.1f}-{hi:.1f}: {n}, {fmt(m)}, {fmt(f)}" for lo, hi, n, m, f in zip(
                cal["edges"][:-1], cal["edges"][1:], cal["counts"], cal["mean_score"], cal["fraction_true"]))
            lines.append(f"- {name}, {inputs}: ECE {fmt(cal['ece'])} ({bins})")
    return "\n".join(lines) + "\n"


def plot_froc(results: dict, path: Path) -> None:
    """FROC curves of the final pipeline (both inputs) on the test and stress sets, and their
    reliability curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, cal_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, res, style in (("test", results, "-"), ("stress", results["stress"], "--")):
        for key, colour in (("fused", "tab:blue"), ("fused+phase", "tab:red")):
            fp, sens = zip(*[(f, s) for _, f, s in res["froc"][key]])
            ax.plot(fp, sens, style, marker="o", ms=3, color=colour,
                    label=f"{name} ({res['n_scans']} scans), {FINAL[key]}")
            cal = res["calibration"][key]
            cal_ax.plot(cal["mean_score"], cal["fraction_true"], style, marker="o", ms=3, color=colour,
                        label=f"{name}, {FINAL[key]}, ECE {cal['ece']:.2f}")
    ax.set(xlabel="false positives per scan", ylabel="lesion sensitivity", title="FROC (thresholds 0.2-0.95)",
           xlim=(0, None), ylim=(0, 1.02))
    cal_ax.plot([0, 1], [0, 1], ":", color="grey")
    cal_ax.set(xlabel="mean final score (bin)", ylabel="fraction on microbleeds", title="Reliability",
               xlim=(0, 1), ylim=(0, 1))
    for a in (ax, cal_ax):
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
        les, sub = results["stages"][key]["lesion"], results["stages"][key]["subject"]
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
    lines += size_lines(results, "")
    lines += mimic_lines(results, "")
    lines += protocol_lines(results, "")
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
    parser.add_argument("--stress", action="store_true", help="also the stress set (as many scans as --n)")
    parser.add_argument("--wide", action="store_true",
                        help="draw the held-out scans with the engine's WIDE randomisation (the widened training "
                             "family; the stress set stays outside it)")
    parser.add_argument("--mid-slices", action="store_true",
                        help=f"with --validation: every held-out scan a 3D SWI with {MID_SLICES}, between "
                             f"the trained regimes ({TRAINED_SLICES})")
    parser.add_argument("--shifted", action="store_true",
                        help=f"with --validation: every held-out scan a 3D SWI of the shifted validation family "
                             f"({SHIFTED}; WIDE randomisation), outside the training and the stress ranges")
    parser.add_argument("--first", type=int, default=0,
                        help="with --validation: start at this validation scan (a fresh block for a second look)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs", help="where the JSON, Markdown and plot go")
    args = parser.parse_args(argv)
    config = DetectorConfig(device=args.device)
    thresholds = {key: Preset("balanced", key == "fused+phase") for key in FINAL}
    if args.models_dir:
        config.models_dir = args.models_dir.resolve()
    seed0 = VALIDATION_SEED0 if args.validation else TEST_SEED0
    if args.validation and args.stress:
        parser.error("--stress reports the stress test seeds: not with --validation (use --wide to validate on "
                     "the widened family)")
    if (args.mid_slices or args.shifted) and not args.validation:
        parser.error("--mid-slices and --shifted draw validation scans for a choice: use them with --validation")
    if args.mid_slices and args.shifted:
        parser.error("choose one protocol draw: --mid-slices or --shifted")
    draw = "mid-slices" if args.mid_slices else "shifted" if args.shifted else None
    wide = args.wide or args.shifted  # the shifted draw is scanned with the WIDE knobs
    if args.first and not args.validation:
        parser.error("--first picks a block of validation scans: the test seeds are reported from the first one")
    outcomes, locations, n_gre = evaluate_set(args.n, seed0, config, args.workers, wide=wide, first=args.first,
                                              draw=draw)
    stress = evaluate_set(args.n, STRESS_SEED0, config, args.workers, stress=True)[0] if args.stress else None
    import torch

    machine = f"{os.cpu_count()} CPU cores"
    devices = [("cpu", machine)] + ([("cuda", torch.cuda.get_device_name(0))] if torch.cuda.is_available() else [])
    profiles = [] if args.no_profile else [dict(profile_scan(device, config.models_dir, with_phase), machine=name)
                                           for device, name in devices for with_phase in (False, True)]
    results = {
        **final_rows(outcomes, thresholds),  # first: the keys below (all variants' FROC) take precedence
        "seeds": ("validation" if args.validation else "test") + (f" from scan {args.first}" if args.first else "")
                 + (", WIDE randomisation" if wide else "")
                 + (f", {DRAW_LABELS[draw]}" if draw else ""),
        "n_scans": len(outcomes), "n_gre2d_15t": int(n_gre),
        "n_negative": sum(len(o.gt_ras) == 0 for o in outcomes),
        "n_lesions": int(sum(len(o.gt_ras) for o in outcomes)), "thresholds": {k: str(t) for k, t in thresholds.items()},
        "candidates_per_scan": float(np.mean([o.n_candidates for o in outcomes])),
        "scan_call": {key: {"threshold": SCAN_THRESHOLD, **summarise(outcomes, key, thresholds[key], SCAN_THRESHOLD)}
                      for key in FINAL},
        "presets": {key: {name: {"threshold": str(t := Preset(name, key == "fused+phase")),
                                 **summarise(outcomes, key, t)} for name in SENSITIVITY_PRESETS} for key in FINAL},
        "froc": {v: froc(outcomes, v) for v in ("cnn", "cnn+yolo", "fused-noyolo", "fused", "fused+phase-noyolo",
                                                "fused+phase")},
        "subject_sweep": {key: [(t, summarise(outcomes, key, t)["subject"]) for t in FROC_THRESHOLDS] for key in FINAL},
        "profiles": profiles, "location": {"threads": LOCATION_THREADS, **summarise_location(locations)},
        "phase_rule": dataclasses.asdict(PHASE_RULE)}
    if stress is not None:
        results["stress"] = final_rows(stress, thresholds)
    text = report(results) + calibration_report(results) + (stress_report(results) if stress is not None else "")
    print(text)
    if args.validation:
        print(rule_sweep(outcomes))
        return
    docs = args.out_dir
    docs.mkdir(parents=True, exist_ok=True)
    if stress is not None:
        plot_froc(results, docs / "images" / "froc.png")
    (docs / "benchmark.json").write_text(json.dumps(results, indent=1, default=float))
    (docs / "BENCHMARK.md").write_text("# Benchmark\n\nMade by `python scripts/benchmark.py`.\n\n" + text)
    if args.readme:
        update_readme(text)


if __name__ == "__main__":
    main()
