"""Build a training set (CNN cubes + YOLO crops) from synthetic or real annotated scans.

Real data: a folder of ``<name>.nii.gz`` (or ``<name>_mag.nii.gz``) magnitude volumes, each with a
``<name>_objects.csv`` (or ``<name>.csv``) listing microbleed centres in RAS mm: columns ``R, A, S``
and optionally ``diameter_mm`` (default 5) and ``is_cmb`` (default 1). Synthetic scans written by
``python -m CMBDetectorLib.synth`` follow the same layout.
"""

from __future__ import annotations

import csv
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from ..geometry import read_image
from ..scanfiles import is_phase_file, scan_base
from ..yolo_rescore import AXIAL, VIEWS
from .examples import ScanExamples, scan_examples

DEFAULT_DIAMETER_MM = 5.0
# Training scans get more microbleeds than the clinical mix so positives are not too rare.
NEGATIVE_SCAN_FRACTION = 0.15


def read_annotations(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Microbleed centres (N, 3) RAS mm and diameters (N,) from a CSV; mimics are skipped."""
    centres, diameters = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if str(row.get("is_cmb", "1")).strip().lower() not in ("1", "true", "yes"):
                continue
            centres.append([float(row["R"]), float(row["A"]), float(row["S"])])
            diameters.append(float(row.get("diameter_mm") or DEFAULT_DIAMETER_MM))
    return np.asarray(centres, dtype=float).reshape(-1, 3), np.asarray(diameters, dtype=float)


def find_annotated_scans(folder: Path) -> list[tuple[Path, Path]]:
    """(image, csv) pairs in ``folder``."""
    pairs = []
    for image in sorted(Path(folder).glob("*.nii*")):
        base = scan_base(image)
        if is_phase_file(image) or base.endswith("_labels"):
            continue
        for name in (f"{base}_objects.csv", f"{base}.csv"):
            if (Path(folder) / name).is_file():
                pairs.append((image, Path(folder) / name))
                break
    return pairs


def _ranker(models_dir: Path | None):
    """The CNN in ``models_dir`` as a hard-negative ranker (None: rank by blob strength)."""
    if models_dir is None:
        return None
    from ..cnn import CandidateClassifier

    return CandidateClassifier(models_dir, "cpu").score


def _synthetic_examples(seed: int, mine_with: Path | None = None, gre15_every: int = 0,
                        wide: bool = False, views: str = AXIAL, vein_contact: float = 0.0) -> ScanExamples:
    from ..synth import generate_scan, sample_protocol
    from ..synth.randomisation import OFF, WIDE

    rng = np.random.default_rng(seed)
    n_cmb = 0 if rng.random() < NEGATIVE_SCAN_FRACTION else int(rng.integers(2, 13))
    protocol = None
    if gre15_every and seed % gre15_every == 0:
        protocol = sample_protocol(rng, kind="gre2d", field_strength_t=1.5)
    randomisation = replace(WIDE if wide else OFF, vein_contact=vein_contact)
    scan = generate_scan(seed, protocol=protocol, n_cmb=n_cmb, randomisation=randomisation)
    return scan_examples(scan.magnitude, scan.geometry, *scan.cmb_truth(), np.random.default_rng(seed),
                         ranker=_ranker(mine_with), views=views)


def _file_examples(pair: tuple[Path, Path], mine_with: Path | None = None, views: str = AXIAL) -> ScanExamples:
    array, geometry = read_image(pair[0])
    centres, diameters = read_annotations(pair[1])
    return scan_examples(array, geometry, centres, diameters, np.random.default_rng(len(str(pair[0]))),
                         ranker=_ranker(mine_with), views=views)


def build(sources, out_path: Path, workers: int = 2, mine_with: Path | None = None, gre15_every: int = 0,
          wide: bool = False, views: str = AXIAL, vein_contact: float = 0.0) -> Path:
    """Examples from synthetic seeds (ints) or annotated (image, csv) pairs into one ``.npz``;
    ``mine_with`` (a models folder) picks negatives that folder's CNN gets most wrong;
    ``gre15_every`` > 0 makes every such seed a 1.5 T thick-slice 2D GRE (the hardest protocol);
    ``wide`` generates the synthetic scans with the engine's WIDE domain randomisation and
    ``vein_contact`` moves that share of their microbleeds onto veins (:mod:`..synth.randomisation`);
    ``views`` are the YOLO crops' (:mod:`..yolo_rescore`)."""
    sources = list(sources)
    synthetic = bool(sources) and isinstance(sources[0], int)
    fn = (partial(_synthetic_examples, gre15_every=gre15_every, wide=wide, vein_contact=vein_contact) if synthetic
          else _file_examples)
    parts: list[ScanExamples] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for n, part in enumerate(pool.map(partial(fn, mine_with=mine_with, views=views), sources), 1):
            parts.append(part)
            print(f"[dataset] {n}/{len(sources)} scans, {int(part.cube_labels.sum())} positive cubes", flush=True)
    boxes = [b for p in parts for b in p.boxes]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out_path,
        cubes=np.concatenate([p.cubes for p in parts]).astype(np.float16),
        cube_labels=np.concatenate([p.cube_labels for p in parts]),
        crops=np.concatenate([p.crops for p in parts]),
        views=np.array(views),
        box_counts=np.array([len(b) for b in boxes]),
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32))
    return out_path


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", metavar="FIRST:LAST", help="synthetic scan seeds, e.g. 0:120")
    source.add_argument("--folder", type=Path, help="folder of NIfTI scans + CSV annotations")
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mine-with", type=Path, metavar="MODELS_DIR",
                        help="hard-negative mining: pick the negatives this folder's CNN scores highest")
    parser.add_argument("--gre15-every", type=int, default=0, metavar="N",
                        help="synthetic only: seeds divisible by N are 1.5 T 2D GRE scans")
    parser.add_argument("--wide", action="store_true",
                        help="synthetic only: the WIDE domain randomisation (through-slice veins, atrophy, ...)")
    parser.add_argument("--vein-contact", type=float, default=0.0, metavar="F",
                        help="synthetic only: share of microbleeds moved onto a nearby vein")
    parser.add_argument("--views", choices=VIEWS, default=AXIAL,
                        help="YOLO crops: axial slices, or the three orthogonal planes through each point")
    args = parser.parse_args(argv)
    if args.synthetic:
        first, last = (int(v) for v in args.synthetic.split(":"))
        sources = list(range(first, last))
    else:
        sources = find_annotated_scans(args.folder)
        if not sources:
            parser.error(f"no NIfTI + CSV pairs found in {args.folder}")
    build(sources, args.out, workers=args.workers, mine_with=args.mine_with, gre15_every=args.gre15_every,
          wide=args.wide, views=args.views, vein_contact=args.vein_contact)


if __name__ == "__main__":
    main()
