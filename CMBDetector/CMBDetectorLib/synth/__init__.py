"""Physics-based synthetic SWI / T2*-GRE scans with cerebral microbleeds and their mimics.

Anatomy from the MNI152 2009a maps (nilearn data files, read directly), magnetised-sphere
microbleeds with sub-voxel dephasing (blooming), veins, calcifications and air-tissue
artefacts, 1.5/3 T 3D SWI and thick-slice 2D GRE acquisitions. See docs/SYNTHETIC_DATA.md.
"""

from .acquisition import AcquisitionProtocol, sample_protocol
from .engine import SyntheticScan, generate_scan
from .io import ScanPaths, read_objects_csv, write_scan
from .objects import SyntheticObject

__all__ = ["AcquisitionProtocol", "ScanPaths", "SyntheticObject", "SyntheticScan", "generate_scan",
           "read_objects_csv", "sample_protocol", "write_scan"]
