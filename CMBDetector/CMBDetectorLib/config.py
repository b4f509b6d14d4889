"""User-facing detector settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"

# Final-score thresholds for the panel's sensitivity presets, chosen on the validation seeds
# (scripts/benchmark.py --validation --n 40): "balanced" is the lowest threshold at about a third
# of a false positive per scan, "high" trades ~0.7 FP/scan for a few more lesions, "specific"
# keeps ~0.1 FP/scan.
SENSITIVITY_PRESETS = {"high": 0.3, "balanced": 0.5, "specific": 0.8}


@dataclass
class DetectorConfig:
    """How to run :func:`CMBDetectorLib.pipeline.detect`.

    modality: "auto", "swi" or "gre"; device: "auto", "cpu" or "cuda";
    threshold: final score in [0, 1] a detection must reach; use_yolo: run the YOLO rescoring stage;
    echo: which echo of a multi-echo ``[k, j, i, echo]`` volume to use (None: combine all echoes);
    phase_convention: "right-handed" (paramagnetic tissue has negative phase) or "left-handed",
    used only when a phase image is given.
    """

    modality: str = "auto"
    device: str = "auto"
    threshold: float = SENSITIVITY_PRESETS["balanced"]
    use_yolo: bool = True
    models_dir: Path = MODELS_DIR
    echo: int | None = None
    phase_convention: str = "right-handed"
