"""Location benchmark on held-out synthetic scans (not a test: it prints figures).

    python scripts/benchmark_location.py [--n 20] [--first 0] [--validation] [--threads 2]

Registers each scan to the MNI152 2009a template and compares the MARS class (lobar / deep /
infratentorial), region and side of every true microbleed, mapped through the registration,
with the atlas labels at its true template position; also checks that a 30 mm slab of each
scan is refused (regions "unknown"). Registration time is measured with SimpleITK limited to
``--threads`` threads. Test seeds by default; ``--validation`` chooses thresholds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))

import SimpleITK as sitk  # noqa: E402

from CMBDetectorLib.evaluation.benchmark import TEST_SEED0, VALIDATION_SEED0, test_scan  # noqa: E402
from CMBDetectorLib.evaluation.location import evaluate_location, location_text, summarise_location  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--first", type=int, default=0, help="index of the first scan (resume a run)")
    parser.add_argument("--validation", action="store_true", help="validation seeds (threshold choice)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(args.threads)
    seed0 = VALIDATION_SEED0 if args.validation else TEST_SEED0
    outcomes = []
    for n in range(args.first, args.first + args.n):
        o = evaluate_location(test_scan(n, seed0))
        outcomes.append(o)
        print(f"scan {n:2d} {o.protocol}{' stripped' if o.skull_stripped else ''}: ok={o.ok} dice={o.dice:.3f} "
              f"brain={o.brain_fraction:.2f} {o.seconds:.1f} s ({o.cpu_seconds:.1f} s CPU) "
              f"class {sum(t.location == p.location for t, p, _ in o.pairs)}/{len(o.pairs)} "
              f"region {sum(t.region == p.region for t, p, _ in o.pairs)} "
              f"side {sum(t.side == p.side for t, p, _ in o.pairs)} "
              f"slab refused={o.slab_refused}", flush=True)
    summary = {"seeds": "validation" if args.validation else "test", "threads": args.threads,
               **summarise_location(outcomes)}
    print(json.dumps(summary, indent=1))
    print(location_text(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
