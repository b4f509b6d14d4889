"""Build the CNNs' feature reference (:mod:`..adaptation`) from in-range synthetic scans.

Each scan runs the pipeline up to the candidates; the statistics of every batch-norm input of
both CNNs (as loaded, unadapted) over its evenly spaced candidates are averaged per modality.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from ..adaptation import REFERENCE_FILE, FeatureReference, LayerStatistics, sample_indices, scan_statistics
from ..config import MODELS_DIR


def scan_reference(seed: int, models_dir: Path) -> tuple[str, dict]:
    """(modality, {network: LayerStatistics}) of the plain synthetic scan ``seed``."""
    from ..candidates import find_candidates
    from ..cnn import PATCH_SIZE, CandidateClassifier, standardise
    from ..patches import PatchSource
    from ..preprocessing import preprocess
    from ..synth import generate_scan
    from ..validation import prepare_input

    scan = generate_scan(seed)
    prepared = prepare_input(scan.magnitude, scan.geometry)
    pre = preprocess(prepared.array, prepared.geometry, prepared.mask)
    cands = find_candidates(pre.image, pre.mask, spacing=float(pre.geometry.spacing[0]))
    clf = CandidateClassifier(models_dir, "cpu")
    x = clf._tensor(standardise(PatchSource(pre.image, PATCH_SIZE)(cands.kji[sample_indices(len(cands.kji))])))
    networks = {"screen": clf.model, "rescore": clf.rescorer}
    return pre.modality, {name: scan_statistics(model, x) for name, model in networks.items() if model is not None}


def build(seeds, models_dir: Path, workers: int = 2) -> FeatureReference:
    """The reference averaged over the scans ``seeds``, per network and modality."""
    with ProcessPoolExecutor(workers) as pool:
        per_scan = list(pool.map(partial(scan_reference, models_dir=models_dir), seeds))
    statistics, n_scans = {}, {}
    for modality in sorted({m for m, _ in per_scan}):
        for network in per_scan[0][1]:
            many = [stats[network] for m, stats in per_scan if m == modality]
            statistics[(network, modality)] = LayerStatistics.average(many)
            n_scans[(network, modality)] = len(many)
    return FeatureReference(statistics, n_scans)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs=2, metavar=("FIRST", "LAST"), required=True,
                        help="synthetic training seeds, inclusive")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the reference into")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    reference = build(range(args.seeds[0], args.seeds[1] + 1), args.models_dir, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    reference.save(args.out / REFERENCE_FILE)
    print({f"{n}/{m}": k for (n, m), k in reference.n_scans.items()})


if __name__ == "__main__":
    main()
