"""Headless batch CLI (slicer-core, no Slicer application needed).

    PYTHONPATH=CMBDetector python -m CMBDetectorMRML INPUT OUTPUT_DIR [--sensitivity S | --threshold T] [--no-yolo] [--device D]
        [--phase PHASE] [--phase-convention right-handed|left-handed]

INPUT is one scan or a folder of scans (.nii, .nii.gz, .nrrd, .mha, .mhd); a phase image named
``X_phase.nii.gz`` beside ``X_mag.nii.gz`` (or ``X.nii.gz``) is used with it. Writes
``<scan>.mrk.json`` (open in Slicer), ``<scan>.csv``, ``<scan>_counts.csv`` and the one-page
``<scan>_report.html`` per scan, plus ``summary.csv`` (with the counts) for a folder. Exit status: 0 all scans ok, 1 some failed, 2 bad arguments/input, 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from CMBDetectorLib.config import SENSITIVITY_PRESETS, DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.phase import CONVENTIONS

from .logic import CMBDetectorLogic


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m CMBDetectorMRML", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="scan file or folder of scans")
    parser.add_argument("output_dir", type=Path, help="folder for .mrk.json, .csv and summary.csv")
    parser.add_argument("--sensitivity", choices=tuple(SENSITIVITY_PRESETS), default="balanced",
                        help="preset final-score threshold, set for magnitude-only or magnitude + phase input")
    parser.add_argument("--threshold", type=float, help="final score a detection must reach, 0-1 (overrides --sensitivity)")
    parser.add_argument("--no-yolo", action="store_true", help="skip the YOLO rescoring stage")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--modality", choices=("auto", "swi", "gre"), default="auto")
    parser.add_argument("--phase", type=Path, help="phase image of a single INPUT scan (default: X_phase beside it)")
    parser.add_argument("--phase-convention", choices=CONVENTIONS, default=CONVENTIONS[0],
                        help="right-handed: paramagnetic tissue (veins, bleeds) has negative phase (default)")
    args = parser.parse_args(argv)
    if args.phase is not None and args.input.is_dir():
        parser.error("--phase names the phase of one scan; for a folder, store X_phase.nii.gz beside each X_mag.nii.gz")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be between 0 and 1")
    return args


class _Printer:
    """Prints each new stage once: ``[ 42%] scan.nii.gz (1/3): 3D CNN``."""

    def __init__(self):
        self._last = None

    def __call__(self, stage: str, fraction: float) -> None:
        if stage != self._last:
            self._last = stage
            print(f"[{100 * fraction:3.0f}%] {stage}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    config = DetectorConfig(modality=args.modality, device=args.device, sensitivity=args.sensitivity,
                            threshold=args.threshold, use_yolo=not args.no_yolo, phase_convention=args.phase_convention)
    logic = CMBDetectorLogic()
    try:
        if args.input.is_dir():
            batch = logic.processDirectory(args.input, args.output_dir, config, progress=_Printer())
            ok = len(batch.outcomes) - len(batch.failed)
            print(f"{ok} scan(s) ok, {len(batch.failed)} failed; summary: {batch.summary_path}")
            for outcome in batch.failed:
                print(f"  FAILED {outcome.file}: {outcome.error}", file=sys.stderr)
            return 1 if batch.failed else 0
        out = logic.processFile(args.input, args.output_dir, config, progress=_Printer(), phasePath=args.phase)
    except KeyboardInterrupt:
        print("Cancelled; finished scans were kept.", file=sys.stderr)
        return 130
    except CMBDetectorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in out.timings.items())
    phase = f"; phase: {out.phase_path.name}" if out.phase_path is not None else ""
    print(f"{out.n_detections} CMB(s) -> {out.markups_path}, {out.csv_path} ({timings}{phase})")
    print(f"Counts: {out.counts_path}; report: {out.report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
