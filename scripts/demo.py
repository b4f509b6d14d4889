"""Detect microbleeds on the bundled sample scan through a real MRML scene (slicer-core).

    python scripts/demo.py [--out output/demo] [--input FILE] [--truth CSV] [--device auto] [--no-yolo] [--no-phase]

Loads the scan (and its phase image ``<name>_phase.nii.gz`` when present) into a vtkMRMLScene as
the Slicer module would, runs the detector through ``CMBDetectorLogic``, and writes ``<name>.mrk.json`` (open in Slicer), ``<name>.csv``,
``<name>_counts.csv``, the one-page report ``<name>_report.html`` and
``<name>_overview.png`` (a minimum-intensity projection plus one axial slice per detection; circles
are detections, cyan crosses the ground-truth CMBs from ``<name>_objects.csv`` when present).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from CMBDetectorLib.config import SENSITIVITY_PRESETS, DetectorConfig  # noqa: E402
from CMBDetectorLib.errors import CMBDetectorError  # noqa: E402
from CMBDetectorLib.geometry import Geometry  # noqa: E402
from CMBDetectorLib.scanfiles import phase_partner, scan_base  # noqa: E402
from CMBDetectorMRML import markups, readout, report, volumes  # noqa: E402
from CMBDetectorMRML.logic import CMBDetectorLogic  # noqa: E402
from CMBDetectorMRML.scene import new_scene  # noqa: E402

SAMPLE = ROOT / "CMBDetector" / "Resources" / "SampleData" / "SampleSWI_mag.nii.gz"
MAX_PANELS = 15
MATCH_MM = 3.0
ZOOM_MM = 80.0
AIR_FRACTION = 0.05


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "output" / "demo", help="output folder")
    parser.add_argument("--input", type=Path, default=SAMPLE, help="scan to process (default: bundled sample)")
    parser.add_argument("--truth", type=Path, help="ground-truth objects CSV (default: <name>_objects.csv next to the scan)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--sensitivity", choices=tuple(SENSITIVITY_PRESETS), default="balanced")
    parser.add_argument("--threshold", type=float, help="final-score threshold (overrides --sensitivity)")
    parser.add_argument("--no-yolo", action="store_true", help="skip the YOLO rescoring stage")
    parser.add_argument("--no-phase", action="store_true", help="ignore the phase image beside the scan")
    return parser.parse_args(argv)


def read_truth(path: Path | None) -> np.ndarray:
    """RAS centres of the true CMBs (rows with is_cmb true) of an objects CSV; empty if absent."""
    if path is None or not path.exists():
        return np.zeros((0, 3))
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["is_cmb"].strip().lower() in ("1", "true", "yes")]
    return np.array([[float(r["R"]), float(r["A"]), float(r["S"])] for r in rows]).reshape(-1, 3)


def display_slice(image: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, callable]:
    """Orient a [j, i] slice radiologically (anterior up, patient right on screen left).

    Returns the flipped image and a function mapping (i, j) voxel coordinates to plot (x, y).
    """
    flip_rows = geometry.direction[1, 1] > 0  # j runs anterior: put high j at the top
    flip_cols = geometry.direction[0, 0] > 0  # i runs to patient right: put high i on the left
    rows, cols = image.shape
    shown = image[::-1 if flip_rows else 1, ::-1 if flip_cols else 1]

    def to_plot(i, j):
        return (cols - 1 - i if flip_cols else i), (rows - 1 - j if flip_rows else j)

    return shown, to_plot


def min_projection(slab: np.ndarray) -> np.ndarray:
    """Minimum-intensity projection over the head only: near-zero air voxels do not win the minimum."""
    values = slab.astype(np.float32)
    air = values < AIR_FRACTION * np.percentile(values, 99)
    projection = np.where(air, np.inf, values).min(axis=0)
    projection[np.isinf(projection)] = 0.0
    return projection


def draw_overview(path: Path, array: np.ndarray, geometry: Geometry, points: list, truth_ras: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    truth_ijk = geometry.ras_to_ijk_points(truth_ras) if len(truth_ras) else np.zeros((0, 3))
    shown_points = points[:MAX_PANELS]
    n_panels = 1 + len(shown_points)
    cols = min(4, n_panels)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    k_all = [p.ijk[2] for p in points] + list(truth_ijk[:, 2])
    k0, k1 = (int(np.floor(min(k_all))) - 2, int(np.ceil(max(k_all))) + 3) if k_all else (len(array) // 2, len(array) // 2 + 1)
    k0, k1 = max(k0, 0), min(k1, len(array))
    panels = [(f"minIP, slices {k0}-{k1 - 1}", min_projection(array[k0:k1]), None)] + [
        (f"{p.label}  score {p.score:.2f}", array[int(round(p.ijk[2]))], p) for p in shown_points]
    pixel_mm = float(np.mean(geometry.spacing[:2]))
    for ax, (title, image, focus) in zip(axes.ravel(), panels):
        shown, to_plot = display_slice(image, geometry)
        tissue = shown[shown > 0]
        low, high = np.percentile(tissue, [1, 99.5]) if tissue.size else (0.0, 1.0)
        ax.imshow(shown, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        k = None if focus is None else int(round(focus.ijk[2]))
        for p in points:
            if k is None or abs(p.ijk[2] - k) <= 0.5:
                x, y = to_plot(p.ijk[0], p.ijk[1])
                radius = max(3.0, 0.9 * (p.diameter_mm or 3.0) / pixel_mm + 2)
                ax.add_patch(Circle((x, y), radius, fill=False, color="yellow", lw=1.2))
                if focus is not None or len(points) <= MAX_PANELS:
                    ax.text(x + radius + 1, y - radius, p.label, color="yellow", fontsize=6, clip_on=True)
        for i, j, tk in truth_ijk:
            if k is None or abs(tk - k) <= 1.0:
                x, y = to_plot(i, j)
                ax.plot(x, y, "+", color="cyan", ms=7, mew=1.2)
        if focus is not None:  # zoom to 80 mm around the detection
            x, y = to_plot(focus.ijk[0], focus.ijk[1])
            half = ZOOM_MM / 2 / pixel_mm
            ax.set_xlim(x - half, x + half)
            ax.set_ylim(y + half, y - half)
        ax.set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle("CMBDetector: yellow circles = detections, cyan + = true CMBs", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    name = scan_base(args.input)
    truth_path = args.truth or args.input.with_name(f"{name}_objects.csv")
    config = DetectorConfig(device=args.device, sensitivity=args.sensitivity, threshold=args.threshold,
                            use_yolo=not args.no_yolo)
    headless = new_scene()
    try:
        volume = volumes.load_volume(headless.scene, args.input)
        print(f"Loaded {args.input.name} into a MRML scene as '{volume.GetName()}'")
        phase_path = None if args.no_phase else phase_partner(args.input)
        phase = None if phase_path is None else volumes.load_volume(headless.scene, phase_path)
        if phase is not None:
            print(f"Loaded its phase image {phase_path.name} as '{phase.GetName()}'")
        stages = []

        def progress(stage: str, fraction: float) -> None:
            if stage not in stages:
                stages.append(stage)
                print(f"  [{100 * fraction:3.0f}%] {stage}", flush=True)

        logic = CMBDetectorLogic()
        out = logic.process(volume, config, progress=progress, phaseNode=phase)
    except CMBDetectorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    markups_path, csv_path = args.out / f"{name}.mrk.json", args.out / f"{name}.csv"
    logic.saveMarkups(out.fiducialNode, markups_path)
    logic.exportCSV(out.fiducialNode, csv_path)
    counts_path, report_path = args.out / f"{name}_counts.csv", args.out / f"{name}_report.html"
    logic.exportCounts(out.fiducialNode, counts_path)
    logic.exportReport(out.fiducialNode, report_path, name)
    points = markups.points(out.fiducialNode)
    truth = read_truth(truth_path)
    array, geometry = volumes.volume_to_array(volume)
    overview_path = args.out / f"{name}_overview.png"
    draw_overview(overview_path, array, geometry, points, truth)

    print(f"\n{out.result.count} microbleed(s) detected ({out.result.n_candidates} candidates, device {out.result.device})")
    print(report.run_text(out.result))
    print(readout.text(logic.summary(out.fiducialNode)))
    if len(truth):
        found = np.array([p.ras for p in points]).reshape(-1, 3)
        distance = np.linalg.norm(found[:, None] - truth[None], axis=2) if len(found) else np.zeros((0, len(truth)))
        hits = int((distance.min(axis=0) <= MATCH_MM).sum()) if len(found) else 0
        false = int((distance.min(axis=1) > MATCH_MM).sum()) if len(found) else 0
        print(f"Ground truth: {hits}/{len(truth)} true CMBs found within {MATCH_MM:.0f} mm; "
              f"{false} detection(s) with no true CMB nearby")
    for path in (markups_path, csv_path, counts_path, overview_path):
        print(f"Wrote {path}")
    print(f"Report (open in a browser): {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
