"""Train the YOLO rescoring model (ultralytics, built from ``yolov8n.yaml``, no download) on the
crops of :mod:`.dataset` (axial or orthogonal views; the views are written beside the weights)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..config import MODELS_DIR
from ..errors import CMBDetectorError
from ..yolo_rescore import AXIAL, IMAGE_SIZE, YOLO_WEIGHTS, views_file


def dataset_views(data: list[Path]) -> str:
    """The one kind of crop the example files hold (files without the key hold axial crops)."""
    views = {}
    for path in data:
        with np.load(path) as part:
            views[path] = str(part["views"]) if "views" in part.files else AXIAL
    if len(set(views.values())) > 1:
        listed = ", ".join(f"{Path(p).name}: {v}" for p, v in views.items())
        raise CMBDetectorError(f"the example files hold crops of different views ({listed}); "
                               "train on files built with the same --views")
    return next(iter(views.values()))


def write_yolo_dataset(data: list[Path], root: Path, seed: int = 0, val_fraction: float = 0.15) -> Path:
    """Crops as PNG + YOLO label files under ``root``; returns the data yaml."""
    import cv2

    parts = [np.load(path) for path in data]
    crops = np.concatenate([p["crops"] for p in parts])
    counts = np.concatenate([p["box_counts"] for p in parts])
    boxes = np.concatenate([p["boxes"] for p in parts])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    order = np.random.default_rng(seed).permutation(len(crops))
    n_val = max(1, int(len(order) * val_fraction))
    for split, idx in (("val", order[:n_val]), ("train", order[n_val:])):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for n in idx:
            cv2.imwrite(str(root / "images" / split / f"{n:06d}.png"), crops[n])
            rows = boxes[offsets[n]:offsets[n + 1]]
            (root / "labels" / split / f"{n:06d}.txt").write_text(
                "".join(f"0 {cx:.5f} {cy:.5f} {w:.5f} {h:.5f}\n" for cx, cy, w, h in rows))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: cmb\n")
    return yaml


def train(data: list[Path], out: Path, epochs: int = 20, seed: int = 0, device: str = "cpu", batch: int = 64,
          init: Path | None = None) -> Path:
    """Train from ``yolov8n.yaml`` (random weights), or fine-tune the checkpoint ``init``; the
    views of the crops go to the JSON beside ``out``."""
    views = dataset_views(data)
    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix="cmb_yolo_") as tmp:
        yaml = write_yolo_dataset(data, Path(tmp) / "data", seed)
        model = YOLO(str(init) if init else "yolov8n.yaml", task="detect")
        model.train(data=str(yaml), imgsz=IMAGE_SIZE, epochs=epochs, batch=batch, device=device, amp=False,
                    pretrained=init is not None, seed=seed, deterministic=True, workers=0, plots=False,
                    project=str(Path(tmp) / "runs"), name="cmb", exist_ok=True, verbose=False,
                    hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, degrees=0.0, fliplr=0.5, flipud=0.5, mosaic=0.5,
                    scale=0.2, translate=0.1, close_mosaic=3, patience=100)
        best = Path(tmp) / "runs" / "cmb" / "weights" / "best.pt"
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, out)
    views_file(out).write_text(json.dumps({"views": views}) + "\n")
    print(f"[yolo] saved {out} ({views} views)", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path, nargs="+", help=".npz files from CMBDetectorLib.training.dataset")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / YOLO_WEIGHTS)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--init", type=Path, help="checkpoint to fine-tune from")
    args = parser.parse_args(argv)
    try:
        train(args.data, args.out, epochs=args.epochs, seed=args.seed, device=args.device, init=args.init)
    except CMBDetectorError as error:
        parser.exit(2, f"train_yolo: error: {error}\n")


if __name__ == "__main__":
    main()
