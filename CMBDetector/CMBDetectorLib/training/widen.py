"""Function-preserving widening of the candidate CNN (Net2WiderNet, Chen et al. 2016).

A wider CNN trained from scratch on one round's cubes lacks what the shipped one learned over
all rounds (docs/MODEL_HISTORY.md, round 19); widening the shipped one keeps it as the start."""

from __future__ import annotations

import numpy as np

from ..cnn import build_model


def widen(model, new_width: int, noise: float = 0.01, seed: int = 0):
    """A width-``new_width`` copy of ``model`` (a :func:`..cnn.build_model`) that computes the
    same function: every channel repeated ``new_width / width`` times and the next
    layer's weights on the copies divided among them. ``noise`` (a fraction of each weight
    tensor's spread) is added to those shares with zero sum over the copies, so the function
    stays exact while the copies' gradients differ and they can learn apart."""
    import torch
    from torch import nn

    width = model[0][0].out_channels  # the first block's channels
    if new_width < width or new_width % width:
        raise ValueError(f"a width-{width} CNN widens to a multiple of {width}, not to {new_width}")
    factor = new_width // width
    rng = np.random.default_rng(seed)
    wide = build_model(new_width)
    old_layers = [m for m in model.modules() if isinstance(m, (nn.Conv3d, nn.BatchNorm3d, nn.Linear))]
    new_layers = [m for m in wide.modules() if isinstance(m, (nn.Conv3d, nn.BatchNorm3d, nn.Linear))]
    inputs_repeated = False  # the first convolution sees the one image channel
    with torch.no_grad():
        for old, new in zip(old_layers, new_layers):
            if isinstance(old, nn.BatchNorm3d):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(new, name).copy_(getattr(old, name).repeat_interleave(factor))
                new.num_batches_tracked.copy_(old.num_batches_tracked)
                continue
            weight = old.weight
            if inputs_repeated:
                weight = _split_inputs(weight, factor, noise, rng)
            if isinstance(old, nn.Conv3d):
                weight = weight.repeat_interleave(factor, dim=0)
                inputs_repeated = True
            else:
                inputs_repeated = False
                new.bias.copy_(old.bias)
            new.weight.copy_(weight)
    return wide


def _split_inputs(weight, factor: int, noise: float, rng: np.random.Generator):
    """``weight`` with each input channel repeated ``factor`` times, each copy's share 1/factor plus
    zero-sum noise over the copies."""
    import torch

    shares = weight.repeat_interleave(factor, dim=1) / factor
    shape = (weight.shape[0], weight.shape[1], factor) + tuple(weight.shape[2:])
    jitter = rng.standard_normal(shape) * noise * float(weight.std())
    jitter -= jitter.mean(axis=2, keepdims=True)
    return shares + torch.from_numpy(jitter.reshape(shares.shape)).to(shares.dtype)
