"""Shared pytest setup: import path, MRML scene fixture and a fast stand-in detector.

MRML tests need slicer-core; without it they are not collected (``collect_ignore_glob``).
"""

from __future__ import annotations

import importlib.util
import locale
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

MODULE_DIR = Path(__file__).resolve().parents[2]  # .../CMBDetector (holds CMBDetectorLib, CMBDetectorMRML)
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

HAS_SLICER = importlib.util.find_spec("slicer") is not None
collect_ignore_glob = [] if HAS_SLICER else ["test_mrml_*.py", "test_logic.py"]


@pytest.fixture
def headless():
    """A fresh vtkMRMLScene with vtkSlicerApplicationLogic and vtkSlicerMarkupsLogic registered."""
    from CMBDetectorMRML.scene import new_scene

    return new_scene()


@pytest.fixture
def scene(headless):
    return headless.scene



def load_script(name: str):
    """``scripts/<name>.py`` loaded as the module ``<name>_script``, registered in ``sys.modules``
    (so what it defines can be pickled)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", MODULE_DIR.parent / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

def result_from_ijk(geometry, ijk_points, scores=None, diameters=None, locations=None):
    """A DetectionResult whose detections sit at the given voxel indices (i, j, k)."""
    from CMBDetectorLib.results import Detection, DetectionResult

    ijk = np.asarray(ijk_points, dtype=float).reshape(-1, 3)
    ras = geometry.ijk_to_ras_points(ijk) if len(ijk) else np.zeros((0, 3))
    n = len(ijk)
    scores = list(scores) if scores is not None else list(np.linspace(0.9, 0.6, n))
    diameters = list(diameters) if diameters is not None else [3.0] * n
    locations = list(locations) if locations is not None else ["lobar"] * n
    detections = [
        Detection(ras=tuple(ras[m]), ijk=tuple(ijk[m]), diameter_mm=diameters[m], candidate_score=0.7,
                  cnn_score=scores[m], yolo_score=scores[m], score=scores[m], location=locations[m])
        for m in range(n)]
    detections.sort(key=lambda d: d.score, reverse=True)
    return DetectionResult(detections=detections, geometry=geometry, timings={"cnn": 0.01},
                           n_candidates=10 * n, device="cpu")


@pytest.fixture
def fake_detect(monkeypatch):
    """Replace ``pipeline.detect`` with a stand-in returning detections at fixed voxel indices.

    Call ``fake_detect(ijk_points, ...)``; the returned list records every call's arguments.
    The location stage is stood in for too (detections keep the given locations) unless
    ``fake_detect(..., real_location=True)``.
    """
    from CMBDetectorLib import location, pipeline

    calls = []

    def install(ijk_points, real_location: bool = False, **kwargs):
        def detect(array, geometry, config=None, mask=None, progress=None, cancel=None, phase=None, acquisition=None):
            calls.append({"array": array, "geometry": geometry, "config": config, "mask": mask, "phase": phase,
                          "acquisition": acquisition})
            for fraction, stage in ((0.0, "Checking input"), (0.5, "3D CNN"), (1.0, "Done")):
                if cancel is not None and cancel():
                    from CMBDetectorLib.progress import DetectionCancelled

                    raise DetectionCancelled(f"Cancelled by the user before '{stage}'.")
                if progress is not None:
                    progress(stage, fraction)
            return result_from_ijk(geometry, ijk_points, **kwargs)

        monkeypatch.setattr(pipeline, "detect", detect)
        if not real_location:
            monkeypatch.setattr(location, "locate", lambda result, *args, **kw: location.Located(result, None))
        return calls

    return install


def write_dicom_series(folder: Path, image: sitk.Image, series_number: int, image_type: str,
                       echoes=None, study="1.2.826.0.1.3680043.2.1125.1", uid=None,
                       description="SWI_Images", prefix="", echo_times_ms=None, field_strength_t=None) -> None:
    """Write ``image`` (or one volume per echo of ``echoes``) as one DICOM file per slice; echo
    ``e`` (1-based) has TE ``echo_times_ms[e - 1]`` (default 5 e ms), MagneticFieldStrength is
    written when given.

    GDCM's writer switches the process locale to "C" (Python would then read text as ASCII):
    the locale is restored afterwards."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        _write_dicom_slices(folder, image, series_number, image_type, echoes, study, uid, description, prefix,
                            echo_times_ms, field_strength_t)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_dicom_slices(folder, image, series_number, image_type, echoes, study, uid, description, prefix,
                        echo_times_ms, field_strength_t) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    volumes = echoes or [image]
    uid = uid or f"{study}.{series_number}"
    direction = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for e, volume in enumerate(volumes, start=1):
        volume = sitk.Cast(volume, sitk.sitkInt16)
        for k in range(volume.GetDepth()):
            slice_ = volume[:, :, k]
            tags = {
                "0008|0060": "MR", "0020|000d": study, "0020|000e": uid, "0020|0011": str(series_number),
                "0020|0012": "1", "0008|103e": description, "0008|0008": image_type,
                "0018|0086": str(e), "0018|0081": str(echo_times_ms[e - 1] if echo_times_ms else 5.0 * e),
                "0020|0013": str(k + 1 + 1000 * e),
                "0020|0037": "\\".join(str(v) for v in (direction[0], direction[3], direction[6],
                                                          direction[1], direction[4], direction[7])),
                "0020|0032": "\\".join(str(v) for v in volume.TransformIndexToPhysicalPoint((0, 0, k))),
                "0008|0018": f"{uid}.{e}.{k + 1}",
            }
            if field_strength_t is not None:
                tags["0018|0087"] = str(field_strength_t)
            for key, value in tags.items():
                slice_.SetMetaData(key, value)
            writer.SetFileName(str(folder / f"{prefix}{series_number}_{e}_{k:03d}.dcm"))
            writer.Execute(slice_)
