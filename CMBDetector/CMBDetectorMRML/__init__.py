"""MRML glue for CMBDetector: volume nodes -> arrays, detections -> markups and tables.

Imports slicer (MRML) and vtk only, never Qt or the application singletons: every function
takes the scene from a node (``node.GetScene()``), so it runs in Slicer and headless on
slicer-core alike. The detector itself lives in :mod:`CMBDetectorLib`. Two plain-Python
helpers of the Slicer module live here too: :mod:`.dependencies` (first-use install plan) and
:mod:`.sampledata` (the Sample Data entry).
"""
