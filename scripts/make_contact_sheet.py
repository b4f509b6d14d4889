"""Contact sheet of synthetic scans: CMBs and their mimics on axial slices.

    python scripts/make_contact_sheet.py [--seed 6] [--out docs/images/synth_contact_sheet.png]

Generates a 3 T SWI scan (and the same head as a thick-slice 1.5 T 2D GRE), then shows an overview,
close-ups of CMBs, a vein, a calcification, an iron-rich nucleus and an air-tissue artefact, and
the filtered phase of a CMB next to a calcification (opposite dipole sign).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))

from CMBDetectorLib.synth import AcquisitionProtocol, generate_scan  # noqa: E402

SWI = AcquisitionProtocol(3.0, 25.0, "swi3d", (0.9, 0.9, 1.2), (256, 256, 128), 35.0)
GRE = AcquisitionProtocol(1.5, 20.0, "gre2d", (0.9, 0.9, 5.0), (256, 256, 32), 35.0)
CROP_MM = 60.0


def _crop(scan, obj, image, half_mm=CROP_MM / 2):
    """Axial crop (slice through the object's centre) and the object's in-crop position."""
    i, j, k = scan.geometry.ras_to_ijk_points(obj.center_ras)[0]
    k = int(np.clip(round(k), 0, image.shape[0] - 1))
    h = np.round(half_mm / scan.geometry.spacing[:2]).astype(int)
    i0, j0 = int(round(i)) - h[0], int(round(j)) - h[1]
    sl = image[k]
    pad = np.pad(sl, ((h[1], h[1] + 1), (h[0], h[0] + 1)), constant_values=0)
    return pad[j0 + h[1]:j0 + 3 * h[1] + 1, i0 + h[0]:i0 + 3 * h[0] + 1], (i - i0, j - j0), k


def _show(ax, scan, obj, title, image=None, cmap="gray", vmin=0, vmax=None, marker=True):
    image = scan.magnitude if image is None else image
    crop, (x, y), k = _crop(scan, obj, image)
    ax.imshow(crop, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", interpolation="nearest")
    if marker:
        r = min(max(obj.diameter_mm, 3.0), 12.0) / scan.geometry.spacing[0] + 3
        ax.add_patch(plt.Circle((x, y), r, fill=False, color="#ff5050", lw=1.2))
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _pick(scan, kind, key=None):
    """First (or smallest ``key``) object of a kind whose centre lies in the brain mask."""
    objs = [o for o in scan.objects if o.kind == kind and _in_brain(scan, o)]
    return min(objs, key=key) if key and objs else (objs[0] if objs else None)


def _depth(scan, obj):
    """Distance (mm) of an object from the centre of the brain mask."""
    centre = scan.geometry.ijk_to_ras_points(np.argwhere(scan.brain_mask).mean(0)[::-1])[0]
    return float(np.linalg.norm(np.subtract(obj.center_ras, centre)))


def _in_brain(scan, obj):
    i, j, k = np.round(scan.geometry.ras_to_ijk_points(obj.center_ras)[0]).astype(int)
    shape = scan.brain_mask.shape
    return 0 <= k < shape[0] and 0 <= j < shape[1] and 0 <= i < shape[2] and scan.brain_mask[k, j, i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "synth_contact_sheet.png"))
    args = parser.parse_args()
    swi = generate_scan(args.seed, SWI, n_cmb=6, skull_stripped=False)
    gre = generate_scan(args.seed, GRE, n_cmb=6, skull_stripped=False)
    vmax = np.percentile(swi.magnitude[swi.brain_mask], 99.5)
    gmax = np.percentile(gre.magnitude[gre.brain_mask], 99.5)
    cmbs = sorted(swi.cmbs, key=lambda o: -o.diameter_mm)
    fig, axes = plt.subplots(3, 5, figsize=(16, 10.4), facecolor="black")
    for ax in axes.ravel():
        ax.set_facecolor("black")
        ax.set_axis_off()
    plt.rcParams["text.color"] = "white"
    k = int(np.median([np.round(swi.geometry.ras_to_ijk_points(o.center_ras)[0][2]) for o in cmbs[:3]]))
    overviews = ((axes[0, 0], swi, vmax, "3 T SWI, TE 25 ms"), (axes[0, 1], gre, gmax, "1.5 T 2D GRE, 5 mm"))
    for ax, scan, top, title in overviews:
        kk = int(round(scan.geometry.ras_to_ijk_points(swi.geometry.ijk_to_ras_points([(128, 128, k)]))[0][2]))
        ax.imshow(scan.magnitude[kk], cmap="gray", vmin=0, vmax=top, origin="lower")
        ax.set_title(f"{title} (slice {kk})", fontsize=9, color="white")
    for ax, obj in zip(axes[0, 2:], cmbs[:3]):
        _show(ax, swi, obj, f"CMB {obj.location}, {obj.diameter_mm:.1f} mm (true {obj.true_diameter_mm:.1f})",
              vmax=vmax)
    if cmbs:
        gre_cmb = min(gre.cmbs, key=lambda o: np.linalg.norm(np.subtract(o.center_ras, cmbs[0].center_ras)))
        _show(axes[1, 0], gre, gre_cmb, f"same CMB, 1.5 T GRE 5 mm: {gre_cmb.diameter_mm:.1f} mm", vmax=gmax)
    mimics = [
        ("vein", _pick(swi, "vein", key=lambda o: _depth(swi, o) + 100 * (o.true_diameter_mm > 1.0)), "medullary vein"),
        ("calcification", _pick(swi, "calcification"), "calcification"),
        ("iron_nucleus", _pick(swi, "iron_nucleus"), "iron-rich nucleus"),
        ("air_artifact", next((o for o in swi.objects if o.kind == "air_artifact"), None), "air-tissue artefact"),
    ]
    for ax, (_, obj, title) in zip(axes[1, 1:], mimics):
        if obj is not None:
            _show(ax, swi, obj, f"{title}, {obj.true_diameter_mm:.1f} mm", vmax=vmax)
    calc = mimics[1][1]
    for ax, obj, name in ((axes[2, 0], cmbs[0] if cmbs else None, "CMB"), (axes[2, 1], calc, "calcification")):
        if obj is not None:
            _show(ax, swi, obj, f"{name}: filtered phase", image=swi.phase, vmin=-1.5, vmax=1.5, marker=False)
    for ax, obj in zip(axes[2, 2:], cmbs[3:6]):
        _show(ax, swi, obj, f"CMB {obj.location}, {obj.diameter_mm:.1f} mm (true {obj.true_diameter_mm:.1f})",
              vmax=vmax)
    for ax in axes.ravel():
        ax.title.set_color("white")
    fig.suptitle(f"Synthetic CMB data (seed {args.seed}): magnitude crops {CROP_MM:.0f} mm, red circles = objects",
                 color="white", fontsize=11)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor="black")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
