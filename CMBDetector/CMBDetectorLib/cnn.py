"""3D CNN that classifies a cube around each candidate as microbleed or mimic."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from .patches import PatchSource
from .progress import FractionCallback

PATCH_SIZE = 24
CNN_WEIGHTS = "cmb_cnn3d.pt"
# Wider CNN that, when the models folder has one (the shipped folder does since round 22), scores
# the gated candidates over FOUR_VIEWS instead of this CNN's 16-view pass (a cascade).
RESCORE_WEIGHTS = "cmb_cnn3d_rescore.pt"
# Candidates the first pass scores at least this are rescored averaged over several views, at
# most the TTA_MAX best of them: each view costs a plain pass (about four with the wider CNN),
# and a model whose easy negatives sit just above the gate (the round-4 CNN gave 0.02 to half of
# a scan's candidates) would otherwise triple the stage's time.
TTA_GATE = 0.02
TTA_MAX = 64
# Share of the stage's progress given to the plain pass (the rescoring pass does most of the work).
PLAIN_PASS_SHARE = 0.25
# Cubes per batch. On the CPU the networks run in the channels-last layout, where oneDNN's 3D
# convolutions on batches of 32 ran 2.5-3x faster than batches of 128 in the default layout (2
# cores; the logits agree to 1e-5); the GPU keeps its larger batches in the default layout.
CPU_BATCH = 32
GPU_BATCH = 128


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


def memory_layout(device):
    """Channels-last on the CPU, where oneDNN's 3D convolutions run faster in it (about 2.5x for
    inference, 1.5x for training on 2 cores), the default layout elsewhere."""
    import torch

    return torch.channels_last_3d if torch.device(device).type == "cpu" else torch.contiguous_format


def network_input(cubes: np.ndarray, device, layout):
    """``(N, k, j, i)`` cubes as a network's ``(N, 1, k, j, i)`` input on ``device``, in ``layout``."""
    import torch

    return torch.from_numpy(cubes[:, None]).to(device).contiguous(memory_format=layout)


def standardise(patches: np.ndarray) -> np.ndarray:
    """Centre patches on the brain median (1.0) so the network sees contrast, not offset."""
    return patches - 1.0


ALL_VIEWS = tuple(itertools.product((False, True), repeat=4))
# Four of them in which each axis is flipped, and the plane transposed, in two: the wider
# rescoring CNN costs about four times the shipped one per cube.
FOUR_VIEWS = ((False, False, False, False), (True, True, False, True), (True, False, True, False),
              (False, True, True, True))


def views(cubes: np.ndarray, which=ALL_VIEWS):
    """Flips (each axis) and in-plane transposes of ``(N, k, j, i)`` cubes, the symmetries the
    network was trained under (:func:`.training.train_cnn.augment`): all 16, or ``which``."""
    for flip_k, flip_j, flip_i, transpose in which:
        view = cubes[:, ::-1] if flip_k else cubes
        view = view[:, :, ::-1] if flip_j else view
        view = view[:, :, :, ::-1] if flip_i else view
        yield np.ascontiguousarray(view.transpose(0, 1, 3, 2) if transpose else view)


class CandidateClassifier:
    """Loads the shipped CNN (and the rescoring CNN when the folder has one) and scores
    candidate cubes in batches."""

    def __init__(self, models_dir: Path, device: str = "cpu"):
        import torch

        self.device = torch.device(device)
        self.layout = memory_layout(self.device)
        self.model = _load(Path(models_dir) / CNN_WEIGHTS, self.device, self.layout)
        rescore = Path(models_dir) / RESCORE_WEIGHTS
        self.rescorer = _load(rescore, self.device, self.layout) if rescore.is_file() else None

    def score(self, image: np.ndarray, kji: np.ndarray, batch_size: int | None = None,
              tta_gate: float | None = TTA_GATE, tta_max: int = TTA_MAX,
              progress: FractionCallback | None = None) -> np.ndarray:
        """Microbleed probability for each candidate ``kji``. Candidates the plain pass scores at
        least ``tta_gate`` (the ``tta_max`` best of them) are rescored with the logit averaged
        over the 16 :func:`views` (test-time augmentation; None turns it off), or with the
        rescoring CNN's logit averaged over :data:`FOUR_VIEWS` when there is one. ``batch_size``
        defaults to :data:`CPU_BATCH` or :data:`GPU_BATCH`; ``progress(fraction done)`` is called
        before each batch."""
        if batch_size is None:
            batch_size = CPU_BATCH if self.device.type == "cpu" else GPU_BATCH
        share = 1.0 if tta_gate is None else PLAIN_PASS_SHARE
        patches = PatchSource(image, PATCH_SIZE)  # padded once for both passes
        logits = self._logits(patches, kji, batch_size, augment=False, progress=_part(progress, 0.0, share))
        if tta_gate is not None:
            refine = np.flatnonzero(logits >= np.log(tta_gate / (1 - tta_gate)))
            refine = refine[np.argsort(-logits[refine], kind="stable")[:tta_max]]
            model, which = (self.model, ALL_VIEWS) if self.rescorer is None else (self.rescorer, FOUR_VIEWS)
            logits[refine] = self._logits(patches, kji[refine], batch_size, augment=True, model=model, which=which,
                                          progress=_part(progress, share, 1.0))
        return (1 / (1 + np.exp(-logits))).astype(np.float32)

    def _logits(self, patches: PatchSource, kji: np.ndarray, batch_size: int, augment: bool, model=None,
                which=ALL_VIEWS, progress: FractionCallback | None = None) -> np.ndarray:
        import torch

        model = self.model if model is None else model

        out = np.zeros(len(kji), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(kji), batch_size):
                if progress is not None:
                    progress(start / len(kji))
                cubes = standardise(patches(kji[start:start + batch_size]))
                batch = views(cubes, which) if augment else [cubes]
                out[start:start + len(cubes)] = np.mean(
                    [model(network_input(v, self.device, self.layout))[:, 0].cpu().numpy() for v in batch], axis=0)
        return out


def _load(path: Path, device, layout):
    """A CNN from its checkpoint, in evaluation mode on ``device``, its weights in ``layout``."""
    from .validation import load_checkpoint

    checkpoint = load_checkpoint(path, required_keys=("state_dict", "width"))
    model = build_model(int(checkpoint["width"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).to(memory_format=layout).eval()


def _part(progress: FractionCallback | None, start: float, end: float) -> FractionCallback | None:
    return None if progress is None else (lambda fraction: progress(start + (end - start) * fraction))
