"""Headless baseline / follow-up comparison (slicer-core, no Slicer application needed).

    PYTHONPATH=CMBDetector python -m CMBDetectorMRML.compare BASELINE FOLLOWUP OUTPUT_DIR
        [--baseline-phase P] [--followup-phase P] [--sensitivity S | --threshold T] [--device D]
        [--field-strength T] [--echo-time MS]
    PYTHONPATH=CMBDetector python -m CMBDetectorMRML.compare FOLDER_OR_PAIRS_CSV OUTPUT_DIR [same options]

One pair writes ``<name>_changes.csv`` (one row per microbleed: R, A, S, change, score, size,
region, matched baseline point, review status), ``<name>_summary.csv`` (counts and ARIA-H grade)
and one ``.mrk.json`` per change list. A folder of ``<subject>_<visit>.nii.gz`` scans (or a CSV of
pairs, columns ``baseline,followup``) compares each subject's later visits with its first and
writes ``followup_summary.csv``, one row per pair. ``X_phase.nii.gz`` beside a scan is its phase.
Each visit's field strength and echo time come from its JSON sidecars (:mod:`CMBDetectorLib.sidecars`);
``--field-strength`` / ``--echo-time`` fill in what they do not say, for the trained-range and
protocol-mismatch warnings.
Exit status: 0 all pairs ok, 1 some failed (e.g. registration), 2 bad arguments/input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from CMBDetectorLib.config import SENSITIVITY_PRESETS, DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.followup.pairs import VisitPair, pairs_from_csv, pairs_in_folder
from CMBDetectorLib.progress import ProgressCallback
from CMBDetectorLib.scanfiles import phase_partner, scan_name
from CMBDetectorLib.sidecars import read_sidecar
from CMBDetectorLib.trained_range import Acquisition

from . import acquisition_info, followup, tables, volumes
from .__main__ import _Printer, add_acquisition_options, check_acquisition_options, stated_acquisition
from .files import atomic_write_text
from .logic import CMBDetectorLogic
from .scene import new_scene

log = logging.getLogger(__name__)
BATCH_SUMMARY = "followup_summary.csv"


@dataclass(frozen=True)
class PairOutputs:
    changes_csv: Path
    summary_csv: Path
    markups: list[Path]
    summary: dict


def compare_files(baseline, followup_path, output_dir, config: DetectorConfig | None = None, name: str | None = None,
                  progress: ProgressCallback | None = None, baseline_phase=None, followup_phase=None,
                  acquisition: Acquisition = Acquisition()) -> PairOutputs:
    """Compare two image files; phase images default to ``X_phase.nii.gz`` beside each scan;
    ``acquisition`` fills in what a visit's sidecars do not say."""
    headless = new_scene()
    nodes = []
    for path, phase in ((baseline, baseline_phase), (followup_path, followup_phase)):
        volume = volumes.load_volume(headless.scene, path)
        acquisition_info.store(volume, read_sidecar(path).filled_from(acquisition))
        phase = phase_partner(path) if phase is None else Path(phase)
        nodes += [volume, None if phase is None else volumes.load_volume(headless.scene, phase)]
    result = followup.compare_nodes(nodes[0], nodes[2], config, nodes[1], nodes[3], progress=progress)
    name = name or scan_name(followup_path)
    output_dir = Path(output_dir)
    changes, summary = followup.write_outputs(result, output_dir, name, Path(baseline).name, Path(followup_path).name)
    logic, written = CMBDetectorLogic(), []
    for visit, lists in (("followup", result.followupLists), ("baseline", result.baselineLists)):
        for change, node in lists.items():
            written.append(output_dir / f"{name}_{visit}_{change.replace(' ', '_')}.mrk.json")
            logic.saveMarkups(node, written[-1])
    row = followup.summary_row(Path(baseline).name, Path(followup_path).name, result.tableNode,
                               result.comparison.change.registration.dice, warnings=result.warnings)
    return PairOutputs(changes, summary, written, row)


def compare_batch(pairs: list[VisitPair], output_dir, config: DetectorConfig | None = None,
                  progress: ProgressCallback | None = None, acquisition: Acquisition = Acquisition()) -> list[dict]:
    """Compare every pair; a failing pair (unreadable, registration failed) is a ``failed`` row.
    ``followup_summary.csv`` is rewritten after each pair."""
    output_dir = Path(output_dir)
    rows = []
    for n, pair in enumerate(pairs):
        step = None if progress is None else (
            lambda stage, f, n=n, pair=pair: progress(f"{pair.name} ({n + 1}/{len(pairs)}): {stage}",
                                                      (n + f) / len(pairs)))
        try:
            rows.append(compare_files(pair.baseline, pair.followup, output_dir, config, pair.name, step,
                                      acquisition=acquisition).summary)
        except CMBDetectorError as exc:
            log.error("CMBDetector: %s failed: %s", pair.name, exc)
            rows.append(followup.summary_row(pair.baseline.name, pair.followup.name, error=str(exc)))
        atomic_write_text(output_dir / BATCH_SUMMARY, tables.rows_to_csv(rows, followup.SUMMARY_COLUMNS))
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m CMBDetectorMRML.compare", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path, nargs="+",
                        help="BASELINE FOLLOWUP OUTPUT_DIR, or FOLDER_OR_PAIRS_CSV OUTPUT_DIR")
    parser.add_argument("--baseline-phase", type=Path)
    parser.add_argument("--followup-phase", type=Path)
    parser.add_argument("--sensitivity", choices=tuple(SENSITIVITY_PRESETS), default="balanced")
    parser.add_argument("--threshold", type=float, help="final score a detection must reach, 0-1 (at follow-up "
                        "a new one: 0.2, where the baseline shows nothing)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add_acquisition_options(parser)
    args = parser.parse_args(argv)
    check_acquisition_options(parser, args)
    if len(args.inputs) not in (2, 3):
        parser.error("give BASELINE FOLLOWUP OUTPUT_DIR, or FOLDER_OR_PAIRS_CSV OUTPUT_DIR")
    if len(args.inputs) == 2 and (args.baseline_phase or args.followup_phase):
        parser.error("--baseline-phase/--followup-phase are for one pair; in a batch put X_phase.nii.gz beside X")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be between 0 and 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    config = DetectorConfig(device=args.device, sensitivity=args.sensitivity, threshold=args.threshold)
    try:
        if len(args.inputs) == 2:
            source, out = args.inputs
            pairs = pairs_from_csv(source) if source.suffix.lower() == ".csv" else pairs_in_folder(source)
            rows = compare_batch(pairs, out, config, progress=_Printer(), acquisition=stated_acquisition(args))
            failed = [r for r in rows if r["status"] == "failed"]
            print(f"{len(rows) - len(failed)} pair(s) ok, {len(failed)} failed; summary: {out / BATCH_SUMMARY}")
            for row in failed:
                print(f"  FAILED {row['followup']}: {row['error']}", file=sys.stderr)
            return 1 if failed else 0
        baseline, follow, out = args.inputs
        result = compare_files(baseline, follow, out, config, progress=_Printer(),
                               baseline_phase=args.baseline_phase, followup_phase=args.followup_phase,
                               acquisition=stated_acquisition(args))
    except CMBDetectorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    s = result.summary
    print(f"new {s['new']}, possible new {s['possible_new']}, persistent {s['persistent']}, resolved "
          f"{s['resolved']}; ARIA-H {s['aria_h_grade']} -> {result.changes_csv}, {result.summary_csv}")
    for warning in filter(None, s["warnings"].split(" | ")):
        print(f"Warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
