"""3D CNN that classifies a cube around each candidate as microbleed or mimic."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .patches import extract_patches

PATCH_SIZE = 24
CNN_WEIGHTS = "cmb_cnn3d.pt"


def build_model(width: int = 8):
    """Three conv blocks (24^3 -> 3^3), global pooling, two-layer head; ~55 k parameters."""
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
            nn.MaxPool3d(2))

    return nn.Sequential(
        block(1, width), block(width, 2 * width), block(2 * width, 4 * width),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(),
        nn.Linear(4 * width, 32), nn.ReLU(inplace=True), nn.Dropout(0.2), nn.Linear(32, 1))


def standardise(patches: np.ndarray) -> np.ndarray:
    """Centre patches on the brain median (1.0) so the network sees contrast, not offset."""
    return patches - 1.0


class CandidateClassifier:
    """Loads the shipped CNN and scores candidate cubes in batches."""

    def __init__(self, models_dir: Path, device: str = "cpu"):
        import torch

        from .validation import load_checkpoint

        checkpoint = load_checkpoint(Path(models_dir) / CNN_WEIGHTS, required_keys=("state_dict", "width"))
        self.model = build_model(int(checkpoint["width"]))
        self.model.load_state_dict(checkpoint["state_dict"])
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    def score(self, image: np.ndarray, kji: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Microbleed probability for each candidate ``kji``."""
        import torch

        scores = np.zeros(len(kji), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(kji), batch_size):
                cubes = standardise(extract_patches(image, kji[start:start + batch_size], PATCH_SIZE))
                x = torch.from_numpy(cubes[:, None]).to(self.device)
                scores[start:start + len(cubes)] = torch.sigmoid(self.model(x)[:, 0]).cpu().numpy()
        return scores
