"""Compare a baseline and a follow-up scan of one synthetic patient (ARIA-H monitoring demo).

    python scripts/demo_followup.py [--out output/demo_followup] [--seed 7] [--cross] [--device auto]

Makes a longitudinal pair with the synthetic engine (the same head rescanned with a new head
position, its baseline microbleeds kept and new ones added; ``--cross``: 1.5 T 2D GRE baseline,
3 T SWI follow-up), writes it as ``P01_v1`` / ``P01_v2`` NIfTI files (+ phase for SWI), runs the
comparison through a real MRML scene (``python -m CMBDetectorMRML.compare`` does the same) and
prints the change counts and the ARIA-H grade next to the truth.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from CMBDetectorLib.config import DetectorConfig  # noqa: E402
from CMBDetectorLib.errors import CMBDetectorError  # noqa: E402
from CMBDetectorLib.followup.change import aria_h_grade  # noqa: E402
from CMBDetectorLib.geometry import write_image  # noqa: E402
from CMBDetectorLib.synth import sample_protocol  # noqa: E402
from CMBDetectorLib.synth.longitudinal import generate_pair  # noqa: E402
from CMBDetectorMRML.compare import compare_files  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "output" / "demo_followup")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cross", action="store_true", help="1.5 T 2D GRE baseline, 3 T SWI follow-up")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    if args.cross:
        protocols = sample_protocol(rng, "gre2d", 1.5), sample_protocol(rng, "swi3d", 3.0)
    else:
        protocols = (sample_protocol(rng, "swi3d", 3.0),) * 2
    print("Making a synthetic baseline / follow-up pair...", flush=True)
    pair = generate_pair(args.seed, *protocols, n_cmb=3, n_new_cmb=6)
    args.out.mkdir(parents=True, exist_ok=True)
    files = []
    for visit, scan in (("v1", pair.baseline), ("v2", pair.followup)):
        path = args.out / f"P01_{visit}.nii.gz"
        write_image(path, scan.magnitude, scan.geometry)
        if scan.protocol.kind == "swi3d":
            write_image(args.out / f"P01_{visit}_phase.nii.gz", scan.phase, scan.geometry)
        files.append(path)
        print(f"  {path.name}: {scan.protocol.field_strength_t:g} T {scan.protocol.kind}, "
              f"{len(scan.cmbs)} microbleed(s)")
    t = time.perf_counter()
    try:
        out = compare_files(files[0], files[1], args.out, DetectorConfig(device=args.device), name="P01_v2")
    except CMBDetectorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    s = out.summary
    print(f"Compared in {time.perf_counter() - t:.0f} s: new {s['new']}, possible new {s['possible_new']}, "
          f"persistent {s['persistent']}, resolved {s['resolved']}; ARIA-H {s['aria_h_grade']} "
          f"(if every possible new is confirmed: {s['aria_h_grade_if_possible_confirmed']}).")
    print(f"Truth: {pair.n_new} new, {len(pair.baseline.cmbs)} persistent; ARIA-H {aria_h_grade(pair.n_new)}.")
    print(f"Wrote {out.changes_csv}, {out.summary_csv} and {len(out.markups)} .mrk.json change lists.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
