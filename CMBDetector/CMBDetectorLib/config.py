"""User-facing detector settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CMBDetectorError

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"

# Final-score thresholds of the panel's sensitivity presets, one table per input (the two score
# fusions differ), chosen on the validation seeds: "balanced" is the highest threshold that keeps
# the best sensitivity at <= 0.5 FP/scan, "high" the lowest of the sweep, "specific" the first at
# ~0.1 FP/scan or less (<= 0.125). Read for the round-5 models (validation scans 0-23, plain and
# WIDE) and read again for the round-22 cascade (round 26, docs/MODEL_HISTORY.md: fresh
# validation scans 108-131 drawn plain and WIDE, 48 scans, 119 microbleeds, pooled): magnitude
# only 0.6 kept 25 false positives (0.52/scan, 89/119), 0.7 keeps 19 (84/119); with phase 0.8
# finds 84/119 at 5 against 73/119 at 3 at 0.9.
SENSITIVITY_PRESETS = {"high": 0.2, "balanced": 0.7, "specific": 0.95}  # magnitude only
PHASE_SENSITIVITY_PRESETS = {"high": 0.2, "balanced": 0.7, "specific": 0.8}  # magnitude + phase
# The balanced preset on scans acquired outside the training ranges (trained_range.outside_training),
# where the final scores of microbleeds run lower: the lowest threshold of the sweep below the
# balanced one that keeps <= 0.5 (magnitude only) / 0.35 (with phase) FP/scan and finds >= 3 more
# microbleeds than the balanced one, on 48 validation scans outside those ranges
# (scripts/benchmark.py --validation --shifted --first 282 --n 24 and --mid-slices --first 132
# --n 24, pooled; docs/MODEL_HISTORY.md, rounds 23 and 26). Magnitude only 0.5: 94/121 at 22 FP
# against 88/121 at 10 at the balanced 0.7; with phase 0.6: 96/121 at 14 FP against 93/121 at 7.
OUT_OF_RANGE_BALANCED = {False: 0.5, True: 0.6}  # keyed by "with phase"
# Scan-level call ("this scan has microbleeds"): the best detection reaches this final score,
# for both inputs (validation: best balanced accuracy of the sweep 0.2-0.95, averaged over the
# two inputs, on round 26's 48 scans: 0.8, 0.897 against 0.851 at 0.9 and 0.845 at 0.95).
# Stricter than the balanced presets, which leave doubtful points for the reader to reject.
SCAN_THRESHOLD = 0.8


def preset_threshold(sensitivity: str, with_phase: bool, out_of_range: bool = False) -> float:
    """Final-score threshold of a sensitivity preset for magnitude-only or magnitude + phase input,
    on a scan inside or (``out_of_range``) outside the training ranges."""
    presets = PHASE_SENSITIVITY_PRESETS if with_phase else SENSITIVITY_PRESETS
    if sensitivity not in presets:
        raise CMBDetectorError(f"Unknown sensitivity '{sensitivity}': choose {', '.join(presets)}.")
    if out_of_range and sensitivity == "balanced":
        return OUT_OF_RANGE_BALANCED[with_phase]
    return presets[sensitivity]


@dataclass
class DetectorConfig:
    """How to run :func:`CMBDetectorLib.pipeline.detect`.

    modality: "auto", "swi" or "gre"; device: "auto", "cpu" or "cuda";
    sensitivity: "high", "balanced" or "specific" preset; threshold: final score in [0, 1] a
    detection must reach (None: the preset's, which depends on whether a phase image is given);
    use_yolo: run the YOLO rescoring stage;
    echo: which echo of a multi-echo ``[k, j, i, echo]`` volume to use (None: combine all echoes);
    phase_convention: "right-handed" (paramagnetic tissue has negative phase) or "left-handed",
    used only when a phase image is given; locate: run the location stage (CMBDetectorLib.location)
    after detection (the MRML Logic does).
    """

    modality: str = "auto"
    device: str = "auto"
    sensitivity: str = "balanced"
    threshold: float | None = None
    use_yolo: bool = True
    models_dir: Path = MODELS_DIR
    echo: int | None = None
    phase_convention: str = "right-handed"
    locate: bool = True  # after detection, register to MNI and label each point's MARS region

    def threshold_for(self, with_phase: bool, out_of_range: bool = False) -> float:
        """The final-score threshold in force for this input, on a scan inside or (``out_of_range``)
        outside the training ranges."""
        if self.threshold is not None:
            return float(self.threshold)
        return preset_threshold(self.sensitivity, with_phase, out_of_range)
