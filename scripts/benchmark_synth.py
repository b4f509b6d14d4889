"""Synthetic-data engine benchmark: time and peak memory of one scan on one CPU core.

    python scripts/benchmark_synth.py [--repeats 3]

Pins the process to one core (single-threaded BLAS/FFT), loads the template once (reported
separately: a one-off per process), then generates a 256x256x128 3 T SWI scan with 10 CMBs and
a 256x256x36 1.5 T 2D GRE scan. Targets: < 10 s and < 2 GB per 256x256x128 scan.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CMBDetector"))

from CMBDetectorLib.synth import AcquisitionProtocol, generate_scan  # noqa: E402
from CMBDetectorLib.synth.anatomy import load_atlas  # noqa: E402

CASES = {
    "swi3d 3T 256x256x128": AcquisitionProtocol(3.0, 20.0, "swi3d", (0.9, 0.9, 1.2), (256, 256, 128), 30.0),
    "gre2d 1.5T 256x256x36": AcquisitionProtocol(1.5, 20.0, "gre2d", (0.9, 0.9, 4.5), (256, 256, 36), 35.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    t0 = time.perf_counter()
    load_atlas()
    print(f"template load (once per process): {time.perf_counter() - t0:.2f} s")
    for name, protocol in CASES.items():
        times, peaks = [], []
        for seed in range(args.repeats):
            tracemalloc.start()
            t0 = time.perf_counter()
            generate_scan(seed, protocol, n_cmb=10, skull_stripped=False)
            times.append(time.perf_counter() - t0)
            peaks.append(tracemalloc.get_traced_memory()[1] / 2 ** 20)
            tracemalloc.stop()
        print(f"{name}: median {sorted(times)[len(times) // 2]:.2f} s (min {min(times):.2f}, max {max(times):.2f}), "
              f"peak traced memory {max(peaks):.0f} MB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS (template cache included): {rss:.0f} MB")


if __name__ == "__main__":
    main()
