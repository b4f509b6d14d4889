"""User-facing detector settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"

# Final-score thresholds for the panel's sensitivity presets.
SENSITIVITY_PRESETS = {"high": 0.3, "balanced": 0.5, "specific": 0.7}


@dataclass
class DetectorConfig:
    """How to run :func:`CMBDetectorLib.pipeline.detect`.

    modality: "auto", "swi" or "gre"; device: "auto", "cpu" or "cuda";
    threshold: final score in [0, 1] a detection must reach; use_yolo: run the YOLO rescoring stage.
    """

    modality: str = "auto"
    device: str = "auto"
    threshold: float = SENSITIVITY_PRESETS["balanced"]
    use_yolo: bool = True
    models_dir: Path = MODELS_DIR
