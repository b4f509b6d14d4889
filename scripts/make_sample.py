"""Write the bundled demo/test scan: CMBDetector/Resources/SampleData/SampleSWI_*.

    python scripts/make_sample.py [--seed 2] [--out CMBDetector/Resources/SampleData]

A full-head 3 T SWI (TE 20 ms, 1 x 1 x 2 mm, 192 x 224 x 72) with 5 CMBs and the usual mimics.
Magnitude and phase are stored as int16 to keep the files small (phase in 12-bit scanner units,
-4096..4095 for -π..π, as scanners export it); labels and objects CSV come with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))

from CMBDetectorLib.geometry import write_image  # noqa: E402
from CMBDetectorLib.synth import AcquisitionProtocol, generate_scan  # noqa: E402
from CMBDetectorLib.synth.io import write_objects_csv  # noqa: E402

PROTOCOL = AcquisitionProtocol(3.0, 20.0, "swi3d", (1.0, 1.0, 2.0), (192, 224, 72), 35.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--n-cmb", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "CMBDetector" / "Resources" / "SampleData"))
    args = parser.parse_args()
    scan = generate_scan(args.seed, PROTOCOL, n_cmb=args.n_cmb, skull_stripped=False)
    if not 4 <= len(scan.cmbs) <= 6:
        raise SystemExit(f"seed {args.seed} gives {len(scan.cmbs)} CMBs in the field of view; pick another seed")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    magnitude = np.clip(np.round(scan.magnitude), 0, np.iinfo(np.int16).max).astype(np.int16)
    write_image(out / "SampleSWI_mag.nii.gz", magnitude, scan.geometry)
    phase = np.clip(np.round(scan.phase * (4096 / np.pi)), -4096, 4095).astype(np.int16)
    write_image(out / "SampleSWI_phase.nii.gz", phase, scan.geometry)
    write_image(out / "SampleSWI_labels.nii.gz", scan.labels, scan.geometry)
    write_objects_csv(out / "SampleSWI_objects.csv", scan.objects)
    for path in sorted(out.glob("SampleSWI_*")):
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")
    print(f"{len(scan.cmbs)} CMBs: " + ", ".join(f"{o.location} {o.diameter_mm:.1f} mm" for o in scan.cmbs))


if __name__ == "__main__":
    main()
