"""A volume node's field strength and echo time, for the trained-range warning
(:mod:`CMBDetectorLib.trained_range`).

The batch keeps what a DICOM header or a JSON sidecar said as node attributes
(``CMBDetector.FieldStrengthT``, ``CMBDetector.EchoTimeMs``, saved with the scene). A volume
loaded in Slicer from an image file (Add Data) gets what the file's JSON sidecars say (the path
is its storage node's); one loaded from DICOM is looked up in the application's DICOM database
through its ``DICOM.instanceUIDs`` attribute. Attributes win, then the file's sidecars.
"""

from __future__ import annotations

import slicer

from CMBDetectorLib.sidecars import read_sidecar
from CMBDetectorLib.trained_range import Acquisition, positive_number

from .markups import ATTRIBUTE_PREFIX

FIELD_ATTRIBUTE = ATTRIBUTE_PREFIX + "FieldStrengthT"
ECHO_TIME_ATTRIBUTE = ATTRIBUTE_PREFIX + "EchoTimeMs"
INSTANCE_UIDS = "DICOM.instanceUIDs"  # set by Slicer's DICOM scalar volume plugin
FIELD_TAG, ECHO_TIME_TAG = "0018,0087", "0018,0081"  # MagneticFieldStrength (T), EchoTime (ms)


def store(node, acquisition: Acquisition) -> None:
    """Keep what is known on ``node``; unknown values leave no attribute."""
    for name, value in ((FIELD_ATTRIBUTE, acquisition.field_strength_t),
                        (ECHO_TIME_ATTRIBUTE, acquisition.echo_time_ms)):
        if value is None:
            node.RemoveAttribute(name)
        else:
            node.SetAttribute(name, f"{value:g}")


def from_dicom_database(node, database) -> Acquisition:
    """Field strength and echo time of the first DICOM instance ``node`` was loaded from
    (``database``: Slicer's ``slicer.dicomDatabase``); nothing known when it was not, the files
    are no longer in the database or the database cannot be read."""
    uids = (node.GetAttribute(INSTANCE_UIDS) or "").split()
    if database is None or not uids:
        return Acquisition()
    try:
        path = database.fileForInstance(uids[0])
        if not path:
            return Acquisition()
        return Acquisition(positive_number(database.fileValue(path, FIELD_TAG)),
                           positive_number(database.fileValue(path, ECHO_TIME_TAG)))
    except (AttributeError, OSError, RuntimeError, TypeError, ValueError):
        return Acquisition()  # a database that cannot answer only leaves the warning unchecked


def from_source_file(node) -> Acquisition:
    """What the JSON sidecars of the image file ``node`` was loaded from say (Slicer keeps the
    path in the node's storage node); nothing known without one."""
    storage = node.GetStorageNode()
    path = storage.GetFileName() if storage is not None else None
    return read_sidecar(path) if path else Acquisition()


def application_database():
    """The Slicer application's DICOM database (``slicer.dicomDatabase``), None without one
    (slicer-core, or the DICOM module not set up)."""
    return getattr(slicer, "dicomDatabase", None)


def read(node, database=None) -> Acquisition:
    """What the node's attributes, else its file's sidecars, else the DICOM database say about
    its acquisition."""
    known = Acquisition(positive_number(node.GetAttribute(FIELD_ATTRIBUTE)),
                        positive_number(node.GetAttribute(ECHO_TIME_ATTRIBUTE)))
    for source in (lambda: from_source_file(node), lambda: from_dicom_database(node, database)):
        if None not in (known.field_strength_t, known.echo_time_ms):
            break
        known = known.filled_from(source())
    return known
