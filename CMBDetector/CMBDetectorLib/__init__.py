"""CMBDetector core: cerebral microbleed detection on SWI / T2*-GRE magnitude volumes.

Slicer-independent: imports only numpy, scipy, SimpleITK, torch, ultralytics and the standard
library. Arrays are indexed ``[k, j, i]`` (as ``slicer.util.arrayFromVolume`` and
``SimpleITK.GetArrayFromImage`` return them); geometry is a 4x4 IJK-to-RAS matrix
(:class:`~CMBDetectorLib.geometry.Geometry`).
"""

from .errors import CMBDetectorError

__all__ = ["CMBDetectorError"]
