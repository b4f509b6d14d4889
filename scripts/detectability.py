"""How visible the benchmark's microbleeds are: the ideal observer's bound on any detector (prints figures).

    python scripts/detectability.py [--set test|stress] [--n 24] [--workers 2]

For each scan of the in-distribution test set or the stress set (the benchmark's seeds), two
noise-free renders, with and without the microbleeds' signal, give each microbleed's d' against
the scan's noise (``CMBDetectorLib.evaluation.detectability``). Prints the spread of d' on the
complex image (all that magnitude and phase hold) and on the magnitude, and the share of the
set's microbleeds that observer finds at 0.2, 0.5 and 0.7 false positives per scan: an upper
bound on any detector's lesion sensitivity there, since the observer knows each microbleed's
signal and the background exactly. No model runs.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CMBDetector"))

from CMBDetectorLib.evaluation.benchmark import stress_scan, test_scan  # noqa: E402
from CMBDetectorLib.evaluation.detectability import LOCATION_MM3, ideal_found, microbleed_detectability  # noqa: E402

FP_RATES = (0.2, 0.5, 0.7)


def scan_detectability(n: int, stress: bool):
    """d' of the n-th scan's microbleeds (one worker)."""
    return microbleed_detectability(partial(stress_scan if stress else test_scan, n))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("test", "stress"), default="stress")
    parser.add_argument("--n", type=int, default=24, help="scans (the benchmark's first n)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.n < 1 or args.workers < 1:
        parser.error("--n and --workers must be at least 1")
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        scans = list(pool.map(partial(scan_detectability, stress=args.set == "stress"), range(args.n)))
    dp = {kind: np.concatenate([getattr(s, kind) for s in scans]) for kind in ("complex", "magnitude")}
    n_cmb = len(dp["complex"])
    print(f"{args.set} set, {args.n} scans, {n_cmb} microbleeds; ideal observer (signal and background known "
          f"exactly), one search location per {LOCATION_MM3:g} mm3 of brain")
    if not n_cmb:
        return
    for kind, label in (("complex", "complex image (magnitude + phase)"), ("magnitude", "magnitude")):
        q = np.percentile(dp[kind], [0, 5, 50])
        found = {fp: float(np.mean(np.concatenate([ideal_found(getattr(s, kind), fp, s.locations)
                                                   for s in scans]))) for fp in FP_RATES}
        print(f"- {label}: d' min {q[0]:.1f}, 5th percentile {q[1]:.1f}, median {q[2]:.1f}; "
              f"{int((dp[kind] < 5).sum())} of {n_cmb} below 5; ideal sensitivity "
              + ", ".join(f"{found[fp]:.3f} at {fp:g} FP/scan" for fp in FP_RATES))


if __name__ == "__main__":
    main()
