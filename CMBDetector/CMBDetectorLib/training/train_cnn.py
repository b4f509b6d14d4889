"""Train the 3D candidate classifier on cubes from :mod:`.dataset` (deterministic with a seed)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..cnn import CNN_WEIGHTS, PATCH_SIZE, build_model, memory_layout, network_input, standardise
from ..config import MODELS_DIR
from ..errors import CMBDetectorError
from ..evaluation.metrics import roc_auc
from ..synth.randomisation import motion_ghosts
from .widen import widen

NEGATIVES_PER_POSITIVE = 3
# A 24-voxel cube holds far less signal than the slice whose k-space the engine corrupts, so it
# needs larger phase errors for ghosts of the same strength: on training seeds 9,100-9,105 the
# engine's 0.3 rad (WIDE's top) fills microbleed cores as 0.5 rad does here, and 1 rad as much
# as the brightest ghosts near the skull base (docs/MODEL_HISTORY.md, "Round 11").
MOTION_RMS_MAX = 1.0
# B0 x TE relative to the training scan's: the training protocols span 1.5 T x 25-40 ms to 3 T x
# 15-30 ms (22-90 T ms); the factor reaches scans with half to 2.5 times a cube's own.
ECHO_FACTOR = (0.5, 2.5)


def augment(cubes: np.ndarray, rng: np.random.Generator, acquisition: bool = False,
            motion: bool = False, echo: bool = False) -> np.ndarray:
    """Random flips on every axis, in-plane transpose and +-10 % contrast; with ``acquisition``
    first what another scanner changes (:func:`acquisition_augment`), with ``motion`` first
    phase-encode ghosting (:func:`motion_augment`), with ``echo`` first another field strength
    times echo time (:func:`echo_augment`)."""
    out = echo_augment(cubes, rng) if echo else cubes
    out = acquisition_augment(out, rng) if acquisition else out
    if out is cubes:
        out = cubes.copy()  # the flips below write in place
    if motion:
        out = motion_augment(out, rng)
    for axis in (1, 2, 3):
        flip = rng.random(len(out)) < 0.5
        out[flip] = np.flip(out[flip], axis=axis)
    swap = rng.random(len(out)) < 0.5
    out[swap] = np.swapaxes(out[swap], 2, 3)
    return out * rng.uniform(0.9, 1.1, size=(len(out), 1, 1, 1)).astype(np.float32)


def acquisition_augment(cubes: np.ndarray, rng: np.random.Generator, gain=(0.75, 1.25), noise_max: float = 0.1,
                        p_noise: float = 0.5, blur=(0.4, 1.2), p_blur: float = 0.3) -> np.ndarray:
    """Standardised cubes as another scanner would give them: the tissue's local level scaled
    by ``gain`` (a residual bias field: the cube's background is no longer the brain median),
    white noise up to ``noise_max`` of the median on the tissue (share ``p_noise``), and a
    Gaussian blur along the slice axis (axis 1; thick slices, share ``p_blur``). Voxels
    outside the brain (raw 0) stay 0."""
    raw = cubes + 1.0
    tissue = raw > 0
    raw = raw * rng.uniform(*gain, size=(len(raw), 1, 1, 1)).astype(np.float32)
    for n in np.flatnonzero(rng.random(len(raw)) < p_blur):
        raw[n] = ndimage.gaussian_filter1d(raw[n], rng.uniform(*blur), axis=0, mode="nearest")
    noisy = rng.random(len(raw)) < p_noise
    sigma = np.where(noisy, rng.uniform(0, noise_max, size=len(raw)), 0.0).astype(np.float32)
    raw = raw + rng.standard_normal(raw.shape, dtype=np.float32) * sigma[:, None, None, None]
    return np.where(tissue, raw, 0.0).astype(np.float32) - 1.0


def echo_augment(cubes: np.ndarray, rng: np.random.Generator, factor=ECHO_FACTOR,
                 p_echo: float = 0.5) -> np.ndarray:
    """Standardised cubes as a scan with another B0 x TE would give them, on a share ``p_echo``:
    for a factor f (log-uniform in ``factor``) each voxel's level over the brain median is raised
    to the power f (signal decays as exp(-TE R2*) and R2* grows with B0, so contrast against the
    tissue scales with B0 x TE), and the cube is zoomed about its centre by f^(1/3) (a sphere's
    blooming, and a vein's apparent calibre, grow about so). Voxels outside the brain stay 0."""
    out = cubes.copy()
    centre = (np.asarray(cubes.shape[1:], float) - 1) / 2
    for n in np.flatnonzero(rng.random(len(out)) < p_echo):
        f = float(np.exp(rng.uniform(*np.log(factor))))
        raw = np.clip(out[n] + 1.0, 0.0, None) ** f
        zoom = f ** (1 / 3)
        out[n] = ndimage.affine_transform(raw, np.full(3, 1 / zoom), offset=centre * (1 - 1 / zoom), order=1,
                                          mode="nearest") - 1.0
    return out


def motion_augment(cubes: np.ndarray, rng: np.random.Generator, rms=(0.0, MOTION_RMS_MAX),
                   fraction: float = 0.25, p_motion: float = 0.5) -> np.ndarray:
    """Standardised cubes with motion ghosting along an in-plane axis (j or i, the phase
    encoding), with the engine's :func:`..synth.randomisation.motion_ghosts`: random phase
    errors (RMS drawn from the range ``rms``, rad) on ``fraction`` of the k-space lines, on a share
    ``p_motion`` of the cubes. The ghosts add in quadrature, so they fill dark cores and leave
    bright tissue almost as it was."""
    out = cubes.copy()
    for n in np.flatnonzero(rng.random(len(out)) < p_motion):
        along_i = rng.random() < 0.5  # motion_ghosts corrupts the lines along j
        raw = (out[n] + 1.0).swapaxes(1, 2) if along_i else out[n] + 1.0
        ghosted = np.abs(motion_ghosts(rng, raw, rng.uniform(*rms), fraction))
        out[n] = (ghosted.swapaxes(1, 2) if along_i else ghosted) - 1.0
    return out


def epoch_indices(labels: np.ndarray, pool: np.ndarray, rng: np.random.Generator,
                  negatives_per_positive: int = NEGATIVES_PER_POSITIVE) -> np.ndarray:
    """One epoch's shuffled sample of ``pool``: every positive and a fresh random draw of negatives."""
    pos, neg = pool[labels[pool] == 1], pool[labels[pool] == 0]
    neg = rng.choice(neg, size=min(len(neg), negatives_per_positive * max(len(pos), 1)), replace=False)
    return rng.permutation(np.concatenate([pos, neg]))


def train(data: list[Path], out: Path, epochs: int = 12, batch_size: int = 64, width: int = 8, seed: int = 0,
          device: str = "cpu", init: Path | None = None, lr: float = 2e-3, acquisition: bool = False,
          motion: bool = False, echo: bool = False) -> dict:
    """Train on the cubes of ``data``; ``init`` starts from a checkpoint (fine-tuning, e.g. on real scans;
    one of a smaller width is first widened to ``width`` by :func:`.widen.widen`).

    ``lr`` is the one-cycle peak learning rate; a fine-tune that should keep what ``init`` knows
    wants a lower one than a fresh start. ``acquisition`` adds :func:`acquisition_augment`,
    ``motion`` :func:`motion_augment`, ``echo`` :func:`echo_augment`."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    parts = [np.load(path) for path in data]
    cubes = standardise(np.concatenate([p["cubes"] for p in parts]).astype(np.float32))
    labels = np.concatenate([p["cube_labels"] for p in parts]).astype(np.float32)
    order = rng.permutation(len(labels))
    n_val = max(1, len(order) // 6)
    val, tr = order[:n_val], order[n_val:]
    model = build_model(width)
    if init is not None:
        from ..validation import load_checkpoint

        start = load_checkpoint(init, required_keys=("state_dict",))
        init_width = int(start.get("width", 8))
        if init_width == width:
            model.load_state_dict(start["state_dict"])
        else:
            narrow = build_model(init_width)
            narrow.load_state_dict(start["state_dict"])
            try:
                model = widen(narrow, width, seed=seed)
            except ValueError as error:
                raise CMBDetectorError(f"--init '{init}' has width {init_width}: it can start a CNN of the same "
                                       f"width or of a multiple of it, not width {width}") from error
    layout = memory_layout(device)
    model.to(device).to(memory_format=layout)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = -(-len(epoch_indices(labels, tr, np.random.default_rng(seed))) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    print(f"[cnn] {len(tr)} train / {len(val)} val cubes, {int(labels.sum())} positives, device {device}", flush=True)
    best = {"val_auc": -1.0}
    for epoch in range(1, epochs + 1):
        model.train()
        t, total = time.perf_counter(), 0.0
        sample = epoch_indices(labels, tr, rng)
        for start in range(0, len(sample), batch_size):
            idx = sample[start:start + batch_size]
            x = network_input(augment(cubes[idx], rng, acquisition, motion, echo), device, layout)
            y = torch.from_numpy(labels[idx]).to(device)
            opt.zero_grad()
            loss = loss_fn(model(x)[:, 0], y)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        auc = roc_auc(labels[val], predict(model, cubes[val], device))
        print(f"[cnn] epoch {epoch}/{epochs} loss {total / len(sample):.4f} val AUC {auc:.4f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
        if auc >= best["val_auc"]:
            weights = {k: v.cpu().contiguous() for k, v in model.state_dict().items()}  # default layout on disk
            best = {"val_auc": auc, "epoch": epoch, "state_dict": weights}
    checkpoint = {"state_dict": best["state_dict"], "width": width, "patch_size": PATCH_SIZE,
                  "val_auc": best["val_auc"], "epoch": best["epoch"], "n_train": len(tr), "seed": seed,
                  "init": str(init) if init else "", "lr": lr, "acquisition_augment": acquisition,
                  "motion_augment": motion, "echo_augment": echo}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    print(f"[cnn] saved {out} (best val AUC {best['val_auc']:.4f} at epoch {best['epoch']})", flush=True)
    return checkpoint


def predict(model, cubes: np.ndarray, device: str, batch_size: int = 256) -> np.ndarray:
    import torch

    model.eval()
    layout = memory_layout(device)
    out = []
    with torch.inference_mode():
        for start in range(0, len(cubes), batch_size):
            x = network_input(cubes[start:start + batch_size], device, layout)
            out.append(torch.sigmoid(model(x)[:, 0]).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path, nargs="+", help=".npz files from CMBDetectorLib.training.dataset")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / CNN_WEIGHTS)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--init", type=Path, help="checkpoint to fine-tune from")
    parser.add_argument("--width", type=int, default=8,
                        help="channels of the first block (8: the shipped CNN, ~55 k parameters; 16: ~217 k); "
                             "an --init of a smaller width is widened to it, computing the same function")
    parser.add_argument("--lr", type=float, default=2e-3, help="one-cycle peak learning rate")
    parser.add_argument("--acquisition-augment", action="store_true",
                        help="also augment gain, noise and slice-axis blur (another scanner's cubes)")
    parser.add_argument("--motion-augment", action="store_true",
                        help="also augment phase-encode ghosting (motion during a 2D GRE)")
    parser.add_argument("--echo-augment", action="store_true",
                        help="also augment the contrast and blooming of another field strength x echo time")
    args = parser.parse_args(argv)
    try:
        train(args.data, args.out, epochs=args.epochs, width=args.width, seed=args.seed, device=args.device,
              init=args.init, lr=args.lr, acquisition=args.acquisition_augment, motion=args.motion_augment,
              echo=args.echo_augment)
    except CMBDetectorError as error:
        parser.exit(2, f"train_cnn: error: {error}\n")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
