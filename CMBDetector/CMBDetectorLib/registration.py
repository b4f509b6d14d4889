"""Registration of a magnitude scan to the MNI152 2009a template (SimpleITK).

The scan is resampled to a 2 mm axis-aligned grid, its brain masked (the user's mask or the
preprocessing's Otsu mask) and matched to the template T1 by Mattes mutual information (SWI /
T2* and T1 contrasts differ): centre of mass, affine over a 2-level pyramid, then a coarse
B-spline. The registration is trusted only when the scan shows enough of the brain and the
warped template brain overlaps the scan's brain; otherwise it says why and maps nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .atlas import RegionAtlas, load_region_atlas, template_brain
from .geometry import LPS_TO_RAS, Geometry, to_sitk
from .preprocessing import brain_mask, canonical_geometry, crop_to, is_masked, remove_gradient, resample

WORK_MM = 2.0
BSPLINE_MESH = 3
SAMPLING = 0.15  # fraction of the masked voxels the metric samples
CROP_MARGIN_MM = 10.0
MASK_OPENING_MM = 8.0  # wider than the detector's: low-resolution heads keep scalp bridges at 4 mm
# Chosen on validation seeds (50 000+): full scans showed brain fractions >= 0.73 and affine
# overlaps >= 0.934; slabs of 30-60 mm fractions <= 0.62, slabs of 90 mm overlaps <= 0.918.
MIN_BRAIN_FRACTION = 0.6  # scan brain volume / template brain volume, checked before registering
MIN_DICE = 0.925  # warped template brain vs scan brain after the affine stage


@dataclass
class AtlasRegistration:
    """Scan -> template mapping (``transform`` maps scan LPS points to template LPS points) and
    its quality; ``ok`` False means the mapping must not be used and ``message`` says why."""

    transform: sitk.Transform | None
    ok: bool
    message: str
    dice: float = 0.0
    brain_fraction: float = 0.0
    metric: float = 0.0
    seconds: float = 0.0

    def to_template(self, ras) -> np.ndarray:
        """(N, 3) scan RAS mm -> template (MNI) RAS mm."""
        if self.transform is None:
            raise ValueError("No registration: check .ok before mapping points.")
        pts = np.atleast_2d(np.asarray(ras, dtype=float)) @ LPS_TO_RAS
        return np.array([self.transform.TransformPoint(tuple(p)) for p in pts]).reshape(-1, 3) @ LPS_TO_RAS


def scan_brain(array: np.ndarray, geometry: Geometry, mask: np.ndarray | None = None, flatten: bool = False):
    """Scan magnitude and brain mask on a ``WORK_MM`` axis-aligned grid, cropped to the brain:
    (image, mask, geometry). Also the follow-up registration's starting point, which ``flatten``s
    the scan first (a coil's intensity gradient divided out, as the detector does): on the 24
    validation pairs both visits' masks then agreed as well or better, while the template
    registration on 12 validation scans got worse (one more refused), so the location stage does not."""
    work, shape = canonical_geometry(geometry, array.shape[:3], WORK_MM)
    image = np.maximum(resample(np.asarray(array, np.float32), geometry, work, shape), 0.0)
    if flatten:
        image = remove_gradient(image, WORK_MM)
    if mask is not None:
        brain = resample(mask.astype(np.uint8), geometry, work, shape, linear=False) > 0
    else:
        brain = brain_mask(image, WORK_MM, opening_mm=MASK_OPENING_MM, masked=is_masked(array))
    if not brain.any():
        return image, brain, work
    return crop_to(image, brain, work, margin=int(round(CROP_MARGIN_MM / WORK_MM)))


def brain_only(image: np.ndarray, brain: np.ndarray, margin_voxels: int = 0) -> np.ndarray:
    """The image scaled to a median brain intensity of 1 (clipped at 4), zero beyond
    ``margin_voxels`` of the brain: scalp, neck and a slab's dark edges, which differ between
    scans and protocols, cannot steer a registration."""
    median = float(np.median(image[brain])) if brain.any() else 1.0
    keep = ndimage.binary_dilation(brain, iterations=margin_voxels) if margin_voxels else brain
    return np.where(keep, np.clip(image / max(median, 1e-6), 0, 4), 0).astype(np.float32)


def _fixed_images(image: np.ndarray, brain: np.ndarray, work: Geometry):
    """Brain-only scan image and the metric mask (brain grown by 6 mm so its edge counts)."""
    grown = ndimage.binary_dilation(brain, iterations=int(round(6 / WORK_MM)))
    return (to_sitk(brain_only(image, brain), work), to_sitk(grown.astype(np.uint8), work),
            to_sitk(brain.astype(np.uint8), work))


def _method(fixed_mask: sitk.Image, shrink, smooth, sampling: float) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, seed=1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(smooth)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def _affine(fixed, moving, fixed_mask, fixed_brain, moving_brain) -> sitk.AffineTransform:
    init = sitk.CenteredTransformInitializer(fixed_brain, moving_brain, sitk.AffineTransform(3),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = _method(fixed_mask, [2, 1], [4.0, 2.0], SAMPLING)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=80,
                                                 relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(init, inPlace=True)
    reg.Execute(fixed, moving)
    return init


def _deformable(fixed, moving, fixed_mask, affine: sitk.Transform) -> tuple[sitk.Transform, float]:
    bspline = sitk.BSplineTransformInitializer(fixed, [BSPLINE_MESH] * 3, order=3)
    reg = _method(fixed_mask, [2], [2.0], SAMPLING)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=15,
                             maximumNumberOfCorrections=5)
    reg.SetMovingInitialTransform(affine)
    reg.SetInitialTransform(bspline, inPlace=True)
    reg.Execute(fixed, moving)
    return sitk.CompositeTransform([affine, bspline]), float(reg.GetMetricValue())


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (0 when both are empty)."""
    return float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))


def register_to_template(array: np.ndarray, geometry: Geometry, mask: np.ndarray | None = None,
                         deformable: bool = True, atlas: RegionAtlas | None = None) -> AtlasRegistration:
    """Register a ``[k, j, i]`` magnitude volume to the template; never raises on a poor fit
    (``ok`` False with the reason instead)."""
    start = time.perf_counter()
    atlas = atlas or load_region_atlas()
    image, brain, work = scan_brain(array, geometry, mask)
    moving_brain = template_brain(atlas)
    template_ml = float(sitk.GetArrayViewFromImage(moving_brain).sum()) * float(np.prod(atlas.template.GetSpacing()))
    fraction = float(brain.sum()) * WORK_MM ** 3 / template_ml
    if fraction < MIN_BRAIN_FRACTION:
        return AtlasRegistration(None, False, f"The scan shows only {fraction:.0%} of a brain's volume (partial "
                                 "coverage): regions are left unknown.", brain_fraction=fraction,
                                 seconds=time.perf_counter() - start)
    fixed, fixed_mask, fixed_brain = _fixed_images(image, brain, work)
    try:
        transform = _affine(fixed, atlas.template, fixed_mask, fixed_brain, moving_brain)
        warped = sitk.Resample(moving_brain, fixed_brain, transform, sitk.sitkNearestNeighbor, 0)
        dice = mask_dice(sitk.GetArrayViewFromImage(warped) > 0, brain)
        if dice < MIN_DICE:
            return AtlasRegistration(None, False, f"The scan's brain does not match the MNI template (overlap "
                                     f"{dice:.2f} < {MIN_DICE} after the affine stage; partial coverage or a "
                                     "failed registration): regions are left unknown.", dice, fraction,
                                     seconds=time.perf_counter() - start)
        metric = 0.0
        if deformable:
            transform, metric = _deformable(fixed, atlas.template, fixed_mask, transform)
    except RuntimeError as exc:
        return AtlasRegistration(None, False, f"Registration to the MNI template failed ({exc}): regions are "
                                 "left unknown.", brain_fraction=fraction, seconds=time.perf_counter() - start)
    return AtlasRegistration(transform, True, "", dice, fraction, metric, time.perf_counter() - start)
