"""Fit the score fusion (:mod:`CMBDetectorLib.fusion`) on scans the CNN and YOLO never saw.

Every scan goes through the full pipeline with the models in ``--models-dir``; each candidate
the CNN lets through to YOLO becomes one row (CNN and YOLO scores, slice thickness, paramagnetic
score), labelled by whether it hits a microbleed (centre within radius + 2 mm). Sources are the
benchmark's fusion seeds (synthetic) or a folder of NIfTI + CSV annotations as for
:mod:`.dataset` (``X_phase.nii.gz`` beside ``X_mag.nii.gz`` adds the phase). Writes
``cmb_fusion.json`` and, when every scan has a phase image, ``cmb_fusion_phase.json``, and the
same fits on the same rows without the YOLO column (``cmb_fusion_noyolo[_phase].json``, used
when the YOLO stage is switched off).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from ..config import MODELS_DIR, DetectorConfig
from ..errors import CMBDetectorError
from ..evaluation.metrics import match_candidates
from ..fusion import FEATURES, PHASE_FUSION_WEIGHTS, ScoreFusion, feature_names, weights_file, without_yolo
from ..geometry import Geometry, read_image
from ..pipeline import fusion_rows, score_candidates
from ..scanfiles import phase_partner
from .dataset import find_annotated_scans, read_annotations

FUSION_SEED0 = 60_000  # disjoint from training (< 10 000), validation (50 000+) and test (100 000+)


def scan_rows(array: np.ndarray, geometry: Geometry, cmb_ras: np.ndarray, cmb_diam: np.ndarray,
              models_dir: Path, phase: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fusion inputs (with the paramagnetic column when ``phase`` is given) and labels of the
    candidates of one scan that reach the YOLO stage."""
    import torch

    torch.set_num_threads(1)
    scored = score_candidates(array, geometry, DetectorConfig(device="cpu", models_dir=models_dir), phase=phase)
    look, x = fusion_rows(scored)
    points = scored.pre.geometry.ijk_to_ras_points(scored.candidates.kji[look][:, ::-1])
    y = match_candidates(points, np.asarray(cmb_ras, float).reshape(-1, 3), np.asarray(cmb_diam, float)) >= 0
    return x, y.astype(np.float64)


def _synthetic_rows(n: int, models_dir: Path, wide_every: int = 0):
    from ..evaluation.benchmark import test_scan
    from ..synth.randomisation import WIDE

    scan = test_scan(n, FUSION_SEED0, WIDE if wide_every and n % wide_every == wide_every - 1 else None)
    return scan_rows(scan.magnitude, scan.geometry, *scan.cmb_truth(), models_dir, scan.phase)


def _file_rows(pair: tuple[Path, Path], models_dir: Path):
    array, geometry = read_image(pair[0])
    partner = phase_partner(pair[0])
    phase = None if partner is None else read_image(partner)[0]
    return scan_rows(array, geometry, *read_annotations(pair[1]), models_dir, phase)


def collect_rows(sources, models_dir: Path, workers: int = 2, wide_every: int = 0):
    """Per-source (inputs, labels) of every source (ints: fusion seeds; (image, csv) pairs: real
    scans); ``wide_every`` N > 0 draws every N-th fusion seed with the engine's WIDE randomisation."""
    sources = list(sources)
    synthetic = bool(sources) and isinstance(sources[0], int)
    fn = partial(_synthetic_rows, wide_every=wide_every) if synthetic else _file_rows
    xs, ys = [], []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for n, (x, y) in enumerate(pool.map(partial(fn, models_dir=models_dir), sources), 1):
            xs.append(x)
            ys.append(y)
            print(f"[fusion] {n}/{len(sources)} scans, {len(y)} rows, {int(y.sum())} on microbleeds", flush=True)
    return xs, ys


def fit(sources, models_dir: Path, out_dir: Path, workers: int = 2, l2: float = 1.0, wide_every: int = 0,
        rows: Path | None = None) -> list[ScoreFusion]:
    """The fits on the rows of :func:`collect_rows`: magnitude only, and with phase when every
    source has a phase image, each with and without the YOLO column; ``rows`` (.npz) keeps the
    rows, and reuses them when it exists."""
    sources = list(sources)
    names = np.array([f"{source}|wide_every={wide_every}" for source in sources])
    if rows is not None and Path(rows).is_file():
        xs, ys = _kept_rows(Path(rows), names)
        print(f"[fusion] rows of {len(sources)} scans from {rows}", flush=True)
    else:
        xs, ys = collect_rows(sources, models_dir, workers, wide_every)
        if rows is not None:
            np.savez(rows, sources=names, **{f"x{n}": x for n, x in enumerate(xs)},
                     **{f"y{n}": y for n, y in enumerate(ys)})
    y = np.concatenate(ys)
    with_phase = all(x.shape[1] > len(FEATURES) for x in xs)
    x = np.concatenate([x if with_phase else x[:, :len(FEATURES)] for x in xs])
    metadata = {"n_scans": len(sources), "wide_every": wide_every, "n_rows": int(len(y)),
                "n_positive": int(y.sum()), "l2": l2}
    fits = []
    for with_yolo in (True, False):
        for phase_model in (False, True)[:1 + with_phase]:
            columns = x if phase_model else x[:, :len(FEATURES)]
            columns = columns if with_yolo else without_yolo(columns)
            fusion = ScoreFusion.fit(columns, y, l2=l2, features=feature_names(phase_model, with_yolo))
            path = Path(out_dir) / weights_file(phase_model, with_yolo)
            fusion.save(path, metadata)
            fits.append(fusion)
            print(f"[fusion] saved {path} ({len(y)} rows, {int(y.sum())} positive)", flush=True)
    if not with_phase:
        print(f"[fusion] {PHASE_FUSION_WEIGHTS} not written: not every scan has a phase image", flush=True)
    return fits


def _kept_rows(path: Path, names: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The rows kept in ``path``, refused unless they came from exactly these sources."""
    with np.load(path) as data:
        kept = data["sources"] if "sources" in data.files else np.array([])
        if kept.shape != names.shape or not (kept == names).all():
            raise CMBDetectorError(
                f"{path} holds fusion rows of {len(kept)} other sources (first: {kept[0] if len(kept) else 'none'}), "
                f"not of these {len(names)} (first: {names[0] if len(names) else 'none'}); "
                "pass another --rows file or delete this one to collect the rows again")
        return [data[f"x{n}"] for n in range(len(names))], [data[f"y{n}"] for n in range(len(names))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", type=int, metavar="N", help=f"the first N fusion seeds ({FUSION_SEED0}+)")
    source.add_argument("--folder", type=Path, help="folder of NIfTI scans + CSV annotations")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="CNN and YOLO weights to fuse")
    parser.add_argument("--out-dir", type=Path, help="where the JSON files go (default: --models-dir)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--l2", type=float, default=1.0, help="L2 penalty on the standardised weights")
    parser.add_argument("--wide-every", type=int, default=0, metavar="N",
                        help="synthetic only: every N-th fusion seed uses the engine's WIDE randomisation")
    parser.add_argument("--rows", type=Path, help=".npz that keeps the rows (reused when it exists)")
    args = parser.parse_args(argv)
    if args.synthetic is not None:
        sources = list(range(args.synthetic))
    else:
        sources = find_annotated_scans(args.folder)
        if not sources:
            parser.error(f"no NIfTI + CSV pairs found in {args.folder}")
    try:
        fit(sources, args.models_dir, args.out_dir or args.models_dir, workers=args.workers, l2=args.l2,
            wide_every=args.wide_every, rows=args.rows)
    except CMBDetectorError as error:
        parser.exit(2, f"train_fusion: error: {error}\n")


if __name__ == "__main__":
    main()
