"""Speed and peak memory of this checkout against another one, in one run (prints figures).

    python scripts/compare_speed.py --baseline /path/to/other/checkout [--repeats 3] [--phase]

Runs ``CMBDetectorLib.evaluation.profile`` on the benchmark's 256x256x128 profile scan, each in a
fresh process, alternating baseline and current (each with its own code and shipped models), and
prints the median time of each, their ratio (current / baseline) and the peak RSS. Alternating
runs share the machine's load, so the ratio is steadier than two absolute times on a noisy machine.
Make a baseline checkout with ``git worktree add /tmp/baseline <commit>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from benchmark import run_profile, write_profile_scan  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout (its repository root)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phase", action="store_true", help="also give the phase image")
    args = parser.parse_args(argv)
    if not (args.baseline / "CMBDetector" / "CMBDetectorLib").is_dir():
        parser.error(f"{args.baseline} is not a CMBDetector checkout")
    runs: dict[str, list[dict]] = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory() as tmp:
        image, phase = write_profile_scan(Path(tmp), args.phase)
        for n in range(args.repeats):
            for name, checkout in (("baseline", args.baseline), ("current", ROOT)):
                runs[name].append(run := run_profile(image, phase, checkout=checkout))
                print(f"[speed] {name} run {n + 1}: {run['total_s']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB, "
                      f"{run['detections']} detections, stages {run['stages_s']}", flush=True)
    median = {name: statistics.median(r["total_s"] for r in rs) for name, rs in runs.items()}
    peak = {name: max(r["peak_rss_mb"] for r in rs) for name, rs in runs.items()}
    print(f"Median time of {args.repeats} runs ({'magnitude + phase' if args.phase else 'magnitude only'}, "
          f"{os.cpu_count()} CPU cores): baseline {median['baseline']:.1f} s, current {median['current']:.1f} s, "
          f"ratio {median['current'] / median['baseline']:.2f}; peak RSS baseline {peak['baseline'] / 1024:.2f} GB, "
          f"current {peak['current'] / 1024:.2f} GB")


if __name__ == "__main__":
    main()
