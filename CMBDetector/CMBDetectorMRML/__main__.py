"""Headless batch CLI (slicer-core, no Slicer application needed).

    PYTHONPATH=CMBDetector python -m CMBDetectorMRML INPUT OUTPUT_DIR [--sensitivity S | --threshold T] [--no-yolo] [--device D]
        [--phase PHASE] [--phase-convention right-handed|left-handed] [--echo N] [--overwrite]
        [--field-strength T] [--echo-time MS]

INPUT is one scan or a folder of scans (.nii, .nii.gz, .nrrd, .mha, .mhd, DICOM series; subfolders
too, so a BIDS dataset or a DICOM export works as it is); a phase image named ``X_phase.nii.gz``
beside ``X_mag.nii.gz`` (or ``X.nii.gz``), the BIDS ``part-phase`` file beside a ``part-mag`` one,
or the phase series of a DICOM magnitude series is used with it. Writes ``<scan>.mrk.json`` (open
in Slicer), ``<scan>.csv``, ``<scan>_counts.csv`` and the one-page ``<scan>_report.html`` per scan
(``<scan>.warnings.txt`` when the run warned), plus ``summary.csv`` (with the counts) for a folder. A reviewed ``<scan>.mrk.json`` is kept (new results go to
``<scan>-run2``) unless ``--overwrite``. Exit status: 0 all scans ok, 1 some failed, 2 bad
arguments/input/output folder, 130 cancelled (Ctrl-C), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from CMBDetectorLib.config import SENSITIVITY_PRESETS, DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.phase import CONVENTIONS
from CMBDetectorLib.trained_range import Acquisition

from .logic import NOT_RUN, OK, SKIPPED, CMBDetectorLogic


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
    parser.add_argument("--echo", type=int, help="echo of a multi-echo scan to use, 0 = first (default: combine "
                        "all echoes; a multi-echo phase needs one echo)")
    add_acquisition_options(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace <scan>.mrk.json even when it holds a review (default: write <scan>-run2)")
    args = parser.parse_args(argv)
    if args.echo is not None and args.echo < 0:
        parser.error("--echo counts from 0 (first echo)")
    if args.phase is not None and args.input.is_dir():
        parser.error("--phase names the phase of one scan; for a folder, store X_phase.nii.gz beside each X_mag.nii.gz")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be between 0 and 1")
    check_acquisition_options(parser, args)
    return args


def add_acquisition_options(parser: argparse.ArgumentParser) -> None:
    """``--field-strength`` / ``--echo-time``: the user's word where a scan's metadata is silent."""
    parser.add_argument("--field-strength", type=float, metavar="T",
                        help="field strength in tesla, for scans whose DICOM header or JSON sidecar does not give it "
                        "(checks the trained range, outside which detection has its own balanced threshold)")
    parser.add_argument("--echo-time", type=float, metavar="MS",
                        help="echo time in ms, for scans whose DICOM header or JSON sidecar does not give it "
                        "(checks the trained range, outside which detection has its own balanced threshold)")


def check_acquisition_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    limits = (("--field-strength", args.field_strength, 20.0), ("--echo-time", args.echo_time, 1000.0))
    for name, value, upper in limits:
        if value is not None and not 0.0 < value <= upper:
            parser.error(f"{name} must be above 0 and at most {upper:g}")


def stated_acquisition(args: argparse.Namespace) -> Acquisition:
    return Acquisition(args.field_strength, args.echo_time)


class _Printer:
    """Prints each new stage once: ``[ 42%] scan.nii.gz (1/3): 3D CNN``."""

    def __init__(self):
        self._last = None

    def __call__(self, stage: str, fraction: float) -> None:
        if stage != self._last:
            self._last = stage
            print(f"[{100 * fraction:3.0f}%] {stage}", flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that a batch stops the same way (finished scans kept)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report_batch(batch) -> int:
    ok, failed = batch.with_status(OK), batch.failed
    print(f"{len(ok)} scan(s) ok, {len(failed)} failed, {len(batch.with_status(SKIPPED))} skipped; "
          f"summary: {batch.summary_path}")
    for outcome in ok:
        for warning in outcome.warnings:
            print(f"  WARNING {outcome.file}: {warning}", file=sys.stderr)
    for outcome in batch.with_status(SKIPPED):
        print(f"  SKIPPED {outcome.file}: {outcome.error}", file=sys.stderr)
    for outcome in failed:
        print(f"  FAILED {outcome.file}: {outcome.error}", file=sys.stderr)
    if batch.summary_error:
        print(f"  {batch.summary_error}", file=sys.stderr)
    return 1 if failed or batch.summary_error else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    config = DetectorConfig(modality=args.modality, device=args.device, sensitivity=args.sensitivity,
                            threshold=args.threshold, use_yolo=not args.no_yolo, phase_convention=args.phase_convention,
                            echo=args.echo)
    stated = stated_acquisition(args)
    logic = CMBDetectorLogic()
    with _sigterm_as_interrupt():
        try:
            if args.input.is_dir():
                return _report_batch(logic.processDirectory(args.input, args.output_dir, config, progress=_Printer(),
                                                            overwrite=args.overwrite, acquisition=stated))
            out = logic.processFile(args.input, args.output_dir, config, progress=_Printer(), phasePath=args.phase,
                                    overwrite=args.overwrite, acquisition=stated)
        except KeyboardInterrupt as exc:
            how = "by SIGTERM" if isinstance(exc, Terminated) else "(Ctrl-C)"
            rest = (f"; {args.output_dir / 'summary.csv'} marks the rest '{NOT_RUN}'"
                    if args.input.is_dir() else "")
            print(f"Stopped {how}; finished scans were kept{rest}.", file=sys.stderr)
            return 143 if isinstance(exc, Terminated) else 130
        except CMBDetectorError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 2
    timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in out.timings.items())
    phase = f"; phase: {out.phase_path.name}" if out.phase_path is not None else ""
    print(f"{out.n_detections} CMB(s) -> {out.markups_path}, {out.csv_path} ({timings}{phase})")
    print(f"Counts: {out.counts_path}; report: {out.report_path}")
    for warning in out.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
