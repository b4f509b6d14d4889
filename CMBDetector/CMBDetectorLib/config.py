"""User-facing detector settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CMBDetectorError

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"

# Final-score thresholds of the panel's sensitivity presets, one table per input (the two score
# fusions differ), chosen on the validation seeds: "balanced" is the highest threshold that keeps
# the best sensitivity at <= 0.5 FP/scan, "high" the lowest of the sweep, "specific" the first at
# ~0.1 FP/scan or less (<= 0.125). Read for the round-22 cascade on every in-range validation
# draw scored with it, pooled (round 27, docs/MODEL_HISTORY.md: plain 84-107, plain and WIDE
# 108-155; 120 scans, 292 microbleeds): magnitude only 0.7 finds 218/292 at 47 false positives
# (0.6: 61, 0.51/scan); with phase 0.6 finds 238/292 at 48 (0.7: 231 at 31), 0.8 218/292 at 14.
SENSITIVITY_PRESETS = {"high": 0.2, "balanced": 0.7, "specific": 0.95}  # magnitude only
PHASE_SENSITIVITY_PRESETS = {"high": 0.2, "balanced": 0.6, "specific": 0.8}  # magnitude + phase
# The balanced preset on scans acquired outside the training ranges (trained_range.outside_training),
# where the final scores of microbleeds run lower: the lowest threshold of the sweep below the
# balanced one that keeps <= 0.5 (magnitude only) / 0.35 (with phase) FP/scan and finds >= 3 more
# microbleeds than the balanced one, else the balanced one, on 120 validation scans outside those
# ranges (shifted 282-353 and mid-slices 132-179, 248 microbleeds; docs/MODEL_HISTORY.md, rounds
# 23 and 27). Magnitude only 0.6: 180 at 46 FP against 173 at 31 at 0.7 (0.5: 62 FP, over the
# cap); with phase no threshold below 0.6 keeps the cap, so it is the balanced one.
OUT_OF_RANGE_BALANCED = {False: 0.6, True: 0.6}  # keyed by "with phase"
# Scan-level call ("this scan has microbleeds"): the best detection reaches this final score,
# for both inputs (validation: best balanced accuracy of the sweep 0.2-0.95, averaged over the
# two inputs, on round 27's 120 scans: 0.8, 0.899 against 0.881 at 0.7 and 0.854 at 0.9).
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
