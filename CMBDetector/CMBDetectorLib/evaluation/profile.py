"""Time and peak memory of ``detect`` on an image file, in a fresh process (once, or ``--repeat`` times in it).

``python -m CMBDetectorLib.evaluation.profile SCAN.nii.gz [--phase PHASE.nii.gz] [--device cpu|cuda] [--threads N]
[--repeat N]`` prints one JSON line per run: stage seconds, total seconds, peak resident memory (MB),
detections. Runs after the first reuse the process, as the module's warm worker does: its later
runs pay no imports, model loading or GPU start-up.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from ..config import MODELS_DIR


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("image")
    parser.add_argument("--phase", help="phase image of the scan (same grid)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--repeat", type=int, default=1, help="runs in this process (the first one is cold)")
    args = parser.parse_args(argv)

    import torch

    from ..config import DetectorConfig
    from ..geometry import read_image
    from ..pipeline import detect

    if args.threads:
        torch.set_num_threads(args.threads)
    array, geometry = read_image(args.image)
    phase = None if args.phase is None else read_image(args.phase)[0]
    for run in range(max(1, args.repeat)):
        t = time.perf_counter()
        result = detect(array, geometry, DetectorConfig(device=args.device, models_dir=args.models_dir), phase=phase)
        total = time.perf_counter() - t
        print(json.dumps({
            "shape_ijk": list(array.shape[::-1]), "device": result.device, "phase": phase is not None, "run": run + 1,
            "total_s": round(total, 2), "stages_s": {k: round(v, 2) for k, v in result.timings.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "detections": result.count}), flush=True)


if __name__ == "__main__":
    main()
