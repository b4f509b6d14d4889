"""Write the location resources: CMBDetector/Resources/Atlases/.

    python scripts/make_atlas.py --mars MARS_scale_parcellation_map_mni.nii.gz

- ``MNI152_2009a_T1_2mm.nii.gz``: nilearn's MNI152 2009a symmetric T1 (brain only, zero
  outside) resampled to 2 mm, uint8, cropped to the brain plus a margin: the registration target.
- ``MARS_MNI152_2009a_1mm.nii.gz``: the MARS parcellation of v-sundaresan/microbleed-size-counting
  (stored as the squares of the labels 1..13 on the FSL MNI152 1 mm grid) turned into uint8
  labels, aligned onto the 2009a template by an affine mask-to-mask registration, resampled on
  the 2009a 1 mm grid and filled so every template brain voxel holds its nearest label.

Prints the checks recorded in Resources/Atlases/ATLAS.md (overlap before / after alignment).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "CMBDetector"))

from CMBDetectorLib.synth.anatomy import _template_path  # noqa: E402

MARGIN_MM = 10


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def _crop(image: sitk.Image, mask: np.ndarray, margin: int) -> sitk.Image:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - margin, 0)[::-1]
    hi = np.minimum(idx.max(0) + margin + 1, mask.shape)[::-1]
    return sitk.RegionOfInterest(image, [int(v) for v in hi - lo], [int(v) for v in lo])


def _align(moving_mask: sitk.Image, fixed_mask: sitk.Image) -> sitk.Transform:
    """Affine transform (fixed -> moving points) matching the two brain masks."""
    fixed = sitk.SmoothingRecursiveGaussian(sitk.Cast(fixed_mask, sitk.sitkFloat32), 2.0)
    moving = sitk.SmoothingRecursiveGaussian(sitk.Cast(moving_mask, sitk.sitkFloat32), 2.0)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 200)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2])
    reg.SetSmoothingSigmasPerLevel([2, 1])
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(sitk.AffineTransform(3), inPlace=False)
    return reg.Execute(fixed, moving)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mars", required=True, help="MARS_scale_parcellation_map_mni.nii.gz")
    parser.add_argument("--out", type=Path, default=ROOT / "CMBDetector" / "Resources" / "Atlases")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    t1 = sitk.ReadImage(str(_template_path("t1")), sitk.sitkFloat32)
    brain = sitk.GetArrayFromImage(t1) > 0
    brain_img = sitk.GetImageFromArray(brain.astype(np.uint8))
    brain_img.CopyInformation(t1)
    mars = sitk.ReadImage(args.mars, sitk.sitkFloat32)
    labels = sitk.Cast(sitk.Round(sitk.Sqrt(sitk.Abs(mars))), sitk.sitkUInt8)
    mars_mask = sitk.Cast(labels > 0, sitk.sitkUInt8)

    identity = sitk.GetArrayFromImage(sitk.Resample(labels, t1, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    transform = _align(mars_mask, brain_img)
    aligned = sitk.GetArrayFromImage(sitk.Resample(labels, t1, transform, sitk.sitkNearestNeighbor, 0))
    print(f"MARS vs 2009a brain Dice: {_dice(identity > 0, brain):.3f} as stored, "
          f"{_dice(aligned > 0, brain):.3f} after the affine alignment")
    print("alignment matrix", np.round(np.asarray(transform.GetParameters()), 3).tolist())

    _, (zi, yi, xi) = ndimage.distance_transform_edt(aligned == 0, return_indices=True)
    filled = np.where(brain, aligned[zi, yi, xi], 0).astype(np.uint8)
    atlas = sitk.GetImageFromArray(filled)
    atlas.CopyInformation(t1)
    atlas = _crop(atlas, brain, 2)
    sitk.WriteImage(atlas, str(args.out / "MARS_MNI152_2009a_1mm.nii.gz"), useCompression=True)

    small = sitk.Resample(t1, [int(round(n / 2)) for n in t1.GetSize()], sitk.Transform(), sitk.sitkLinear,
                          t1.GetOrigin(), (2.0, 2.0, 2.0), t1.GetDirection(), 0.0)
    arr = sitk.GetArrayFromImage(small)
    scaled = np.clip(np.round(arr / arr.max() * 255), 0, 255).astype(np.uint8)
    template = sitk.GetImageFromArray(scaled)
    template.CopyInformation(small)
    template = _crop(template, scaled > 0, MARGIN_MM // 2)
    sitk.WriteImage(template, str(args.out / "MNI152_2009a_T1_2mm.nii.gz"), useCompression=True)
    for name in ("MARS_MNI152_2009a_1mm.nii.gz", "MNI152_2009a_T1_2mm.nii.gz"):
        print(name, (args.out / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
