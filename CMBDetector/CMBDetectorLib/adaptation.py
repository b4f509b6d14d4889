"""Per-scan alignment of a CNN's feature statistics to those of the scans it was trained on.

A scan acquired differently (field strength, echo time, slice thickness, scanner) shifts the
statistics of the feature maps a CNN computes over its candidates. Before scoring, each
batch-norm layer's running mean and variance are moved, channel by channel, so that the layer's
output over this scan's candidates has the mean and variance it has over the reference scans'
(scan mean m, variance v; reference m0, v0; r = v / v0: running mean -> m + sqrt(r) (running
mean - m0), running variance -> r x running variance), layer after layer. A scan like the
reference ones is scored as before (test-time adaptation of batch norm, relative to a reference).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CMBDetectorError

REFERENCE_FILE = "cmb_cnn3d_reference.npz"
ADAPT_CUBES = 256  # candidates a scan's statistics are taken over
MIN_CUBES = 32  # fewer candidates than this: no adaptation
VARIANCE_RATIO = (0.25, 4.0)


@dataclass
class LayerStatistics:
    """Per-channel mean and variance of each batch-norm layer's input, in network order."""

    means: list[np.ndarray]
    variances: list[np.ndarray]

    @classmethod
    def average(cls, many: list[LayerStatistics]) -> LayerStatistics:
        return cls([np.mean([s.means[n] for s in many], axis=0) for n in range(len(many[0].means))],
                   [np.mean([s.variances[n] for s in many], axis=0) for n in range(len(many[0].variances))])


def sample_indices(n: int, k: int = ADAPT_CUBES) -> np.ndarray:
    """``k`` evenly spaced indices of ``n`` candidates (all when fewer)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int)) if n else np.zeros(0, int)


def _batch_norms(model):
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]


def _statistics_pass(model, x, reference: LayerStatistics | None) -> LayerStatistics:
    """One forward pass over ``x`` recording each batch-norm input's statistics; with a
    ``reference``, each layer's running statistics are moved before it normalises."""
    import torch

    means, variances = [], []

    def hook(module, inputs):
        a = inputs[0].float()
        mean, var = a.mean(dim=(0, 2, 3, 4)), a.var(dim=(0, 2, 3, 4), unbiased=False)
        n = len(means)
        means.append(mean.cpu().numpy().astype(np.float64))
        variances.append(var.cpu().numpy().astype(np.float64))
        if reference is not None:
            ref_mean = torch.as_tensor(reference.means[n], dtype=module.running_mean.dtype, device=mean.device)
            ref_var = torch.as_tensor(reference.variances[n], dtype=module.running_var.dtype, device=mean.device)
            ratio = torch.clamp(var / torch.clamp(ref_var, min=1e-12), *VARIANCE_RATIO)
            module.running_mean.copy_(mean + ratio.sqrt() * (module.running_mean - ref_mean))
            module.running_var.mul_(ratio)

    handles = [m.register_forward_pre_hook(hook) for m in _batch_norms(model)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return LayerStatistics(means, variances)


def scan_statistics(model, x) -> LayerStatistics:
    """The statistics of ``model``'s batch-norm inputs over the cubes ``x`` (model unchanged)."""
    return _statistics_pass(model, x, None)


def adapted(model, x, reference: LayerStatistics):
    """A copy of ``model`` whose batch-norm layers are aligned to ``reference`` on the cubes ``x``."""
    model = copy.deepcopy(model)
    _statistics_pass(model, x, reference)
    return model


@dataclass
class FeatureReference:
    """Reference statistics per CNN ("screen", "rescore") and modality ("swi", "gre")."""

    statistics: dict  # (network, modality) -> LayerStatistics
    n_scans: dict  # (network, modality) -> scans averaged

    def get(self, network: str, modality: str | None) -> LayerStatistics | None:
        return self.statistics.get((network, modality))

    def save(self, path: Path) -> None:
        arrays = {}
        for (network, modality), stats in self.statistics.items():
            arrays[f"{network}/{modality}/n_scans"] = np.array(self.n_scans[(network, modality)])
            for n, (m, v) in enumerate(zip(stats.means, stats.variances)):
                arrays[f"{network}/{modality}/{n}/mean"] = m
                arrays[f"{network}/{modality}/{n}/var"] = v
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> FeatureReference:
        """Read a reference file; a corrupt one is a clear error."""
        try:
            with np.load(path) as data:
                keys = {"/".join(k.split("/")[:2]) for k in data.files}
                statistics, n_scans = {}, {}
                for key in sorted(keys):
                    network, modality = key.split("/")
                    layers = sorted({int(k.split("/")[2]) for k in data.files
                                     if k.startswith(key + "/") and k.split("/")[2].isdigit()})
                    statistics[(network, modality)] = LayerStatistics(
                        [data[f"{key}/{n}/mean"] for n in layers], [data[f"{key}/{n}/var"] for n in layers])
                    n_scans[(network, modality)] = int(data[f"{key}/n_scans"])
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise CMBDetectorError(f"Feature reference {path} is corrupt ({exc}).") from None
        return cls(statistics, n_scans)
