"""MRML glue for CMBDetector: volume nodes -> arrays, detections -> markups and tables.

Imports slicer (MRML) and vtk only, never Qt or the application singletons: every function
takes the scene from a node (``node.GetScene()``), so it runs in Slicer and headless on
slicer-core alike. The detector itself lives in :mod:`CMBDetectorLib`. Two plain-Python
helpers of the Slicer module live here too: :mod:`.dependencies` (first-use install plan) and
:mod:`.sampledata` (the Sample Data entry). So does the detector worker that runs Apply in its
own process, also plain Python: :mod:`.worker_protocol` (messages), :mod:`.worker` (the process)
and :mod:`.worker_client` (start, poll, cancel); :mod:`.background` joins it to the scene.
"""
