"""The bundled sample scan as a Sample Data module entry (arguments of
``SampleData.SampleDataLogic.registerCustomSampleDataSource``).

The files ship with the module (``Resources/SampleData``, also used by the headless demo), so
the URIs are local ``file://`` URLs; the checksums make Sample Data verify its cached copies.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "Resources" / "SampleData"
THUMBNAIL = Path(__file__).resolve().parents[1] / "Resources" / "Icons" / "SampleSWI.png"
CATEGORY = "CMB Detector"
SAMPLE_NAME = "CMBSampleSWI"
# file name -> (node name, SHA256); scripts/make_sample.py writes the files.
FILES = {
    "SampleSWI_mag.nii.gz": ("CMBSampleSWI", "786d71a30985c937461883a9c62a0c1ea78f1a76b30462cf8c598a675520f97e"),
    "SampleSWI_phase.nii.gz": ("CMBSampleSWI_phase",
                               "36456d5a3c110b539fc70d8e98687101b9204eac1b8959c1c718bd038b7e94a5"),
}


def sample_data_source() -> dict:
    """Keyword arguments registering the synthetic SWI magnitude and phase pair."""
    return {
        "category": CATEGORY,
        "sampleName": SAMPLE_NAME,
        "thumbnailFileName": str(THUMBNAIL),
        "uris": [(SAMPLE_DIR / name).as_uri() for name in FILES],
        "fileNames": list(FILES),
        "nodeNames": [node for node, _sha in FILES.values()],
        "checksums": [f"SHA256:{sha}" for _node, sha in FILES.values()],
        "loadFileTypes": ["VolumeFile"] * len(FILES),
    }
