"""The detector worker with a stand-in ``pipeline.detect`` (no torch) and location stage, for the
worker tests.

    python -m fake_worker   (PYTHONPATH: CMBDetector and Testing/Python)

``FAKE_DETECT`` chooses what the stand-in does: ``ok`` (default) reports ``STEPS`` progress
lines over ``FAKE_DETECT_SECONDS`` and returns detections at :data:`IJK`; ``busy`` computes
for a minute without reporting (a stage with no progress hooks); ``crash`` kills its own
process after the first progress line; ``bad-input`` raises CMBDetectorError; ``located``
is ``ok`` whose location stage returns :func:`shift_registration` (the others run none).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from conftest import result_from_ijk

from CMBDetectorLib import location, pipeline
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.registration import AtlasRegistration
from CMBDetectorMRML import worker

IJK = [(5.0, 6.0, 4.0), (20.0, 10.0, 8.0), (12.0, 25.0, 15.0)]
STEPS = 10
SHIFT_MM = (3.0, -2.0, 5.0)  # LPS translation of :func:`shift_registration`


def shift_registration() -> AtlasRegistration:
    """A successful registration that shifts every point by :data:`SHIFT_MM` (LPS)."""
    import SimpleITK as sitk

    return AtlasRegistration(sitk.TranslationTransform(3, SHIFT_MM), True, "ok", dice=0.95, seconds=1.5)


def fake_locate(result, *args, **kwargs):
    located = os.environ.get("FAKE_DETECT") == "located"
    return location.Located(result, shift_registration() if located else None)


def fake_detect(array, geometry, config=None, mask=None, progress=None, cancel=None, phase=None, acquisition=None):
    mode = os.environ.get("FAKE_DETECT", "ok")
    if mode == "bad-input":
        raise CMBDetectorError(f"Volume of shape {array.shape} refused by the stand-in detector.")
    if mode == "busy":
        end = time.perf_counter() + 60
        while time.perf_counter() < end:
            pass
    seconds = float(os.environ.get("FAKE_DETECT_SECONDS", "0.5"))
    for step in range(STEPS + 1):
        progress(f"Step {step}", step / STEPS)
        if mode == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(seconds / STEPS)
    result = result_from_ijk(geometry, IJK, diameters=[3.0, 6.0, 2.0])
    result.warnings.append(f"mask {mask is not None}, phase {phase is not None}, sum {float(array.sum()):.1f}, "
                           f"{acquisition}")
    return result


if __name__ == "__main__":
    pipeline.detect = fake_detect
    location.locate = fake_locate
    print("fake worker starting", file=sys.stderr)
    worker.serve(sys.stdin, worker.protocol_stream())
