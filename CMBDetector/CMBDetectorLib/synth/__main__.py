"""CLI: ``python -m CMBDetectorLib.synth --n 20 --seed 0 --out DIR [--kind swi3d|gre2d] [--field 1.5|3]``."""

from __future__ import annotations

import argparse

import numpy as np

from .acquisition import FIELDS, KINDS, sample_protocol
from .engine import generate_scan
from .io import write_scan


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m CMBDetectorLib.synth", description=__doc__)
    parser.add_argument("--n", type=int, default=1, help="number of scans (seeds seed .. seed+n-1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--kind", choices=KINDS)
    parser.add_argument("--field", type=float, choices=FIELDS)
    parser.add_argument("--skull-stripped", action="store_true", help="mask every scan to the brain")
    args = parser.parse_args(argv)
    for seed in range(args.seed, args.seed + args.n):
        protocol = None
        if args.kind or args.field:
            protocol = sample_protocol(np.random.default_rng([seed, 1]), args.kind, args.field)
        scan = generate_scan(seed, protocol, skull_stripped=True if args.skull_stripped else None)
        name = f"synth_{seed:05d}"
        write_scan(scan, args.out, name)
        p = scan.protocol
        print(f"{name}: {p.kind} {p.field_strength_t:g}T TE={p.te_ms:g}ms {scan.magnitude.shape[::-1]} "
              f"CMBs={len(scan.cmbs)} skull_stripped={scan.skull_stripped}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
