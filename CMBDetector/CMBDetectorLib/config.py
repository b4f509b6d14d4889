"""User-facing detector settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CMBDetectorError

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"

# Final-score thresholds of the panel's sensitivity presets, one table per input (the two score
# fusions differ), chosen on the validation seeds (round-5 models with gradient removal: 48 scans,
# validation scans 0-23 drawn plain and drawn WIDE, scripts/benchmark.py --validation [--wide]
# [--first 12] --n 12, pooled): "balanced" is the highest threshold that keeps the best
# sensitivity at <= 0.5 FP/scan, "high" the lowest of the sweep, "specific" the first at ~0.1
# FP/scan or less.
SENSITIVITY_PRESETS = {"high": 0.2, "balanced": 0.6, "specific": 0.95}  # magnitude only
PHASE_SENSITIVITY_PRESETS = {"high": 0.2, "balanced": 0.7, "specific": 0.9}  # magnitude + phase
# The balanced preset on scans acquired outside the training ranges (trained_range.outside_training),
# where the final scores of microbleeds run lower: the lowest threshold of the sweep that keeps
# <= 0.5 (magnitude only) / 0.35 (with phase) FP/scan and finds >= 3 more microbleeds than the
# balanced one, on 48 validation scans outside those ranges (scripts/benchmark.py --validation
# --shifted --first 282 --n 24 and --mid-slices --first 132 --n 24, pooled; docs/MODEL_HISTORY.md,
# round 23). With phase 0.6: 96/121 at 14 FP against 93/121 at 7; magnitude only none qualified
# (0.5: 94/121 at 22 FP against 92/121 at 14), so it keeps 0.6.
OUT_OF_RANGE_BALANCED = {False: 0.6, True: 0.6}  # keyed by "with phase"
# Scan-level call ("this scan has microbleeds"): the best detection reaches this final score,
# for both inputs (validation: best balanced accuracy of the sweep 0.2-0.95, averaged over the
# two inputs, pooled over the same 48 scans: 0.95, 0.842 against 0.812 at 0.9 and 0.798 at 0.8).
# Stricter than the lesion presets, which leave doubtful points for the reader to reject.
SCAN_THRESHOLD = 0.95


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
