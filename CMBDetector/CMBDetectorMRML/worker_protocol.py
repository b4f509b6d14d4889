"""Messages between the panel and the detector worker process (JSON, one message per line).

The client writes a :class:`Job` line to the worker's stdin; the worker answers on stdout with
:class:`Ready` once (models' libraries imported), then for each job :class:`Progress` lines and
one :class:`Done` (result file written) or :class:`Failed`. Input arrays travel as ``.npy``
files and the result as a JSON file (:func:`write_result` / :func:`read_result`; the location
stage's registration beside it, :func:`write_registration`), all in a temporary folder the
client owns. No Slicer, Qt or torch imports here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

from CMBDetectorLib.config import DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.registration import AtlasRegistration
from CMBDetectorLib.results import Detection, DetectionResult

from .files import atomic_write_text

INPUT_ERROR, INTERNAL_ERROR, CRASH = "input", "internal", "crash"  # kinds of Failed


@dataclass(frozen=True)
class Job:
    """One detection: input ``.npy`` arrays (``[k, j, i]``), the magnitude's IJK-to-RAS matrix,
    the detector settings and where to write the result."""

    job_id: int
    magnitude: str
    ijk_to_ras: list[list[float]]
    config: dict
    result: str
    mask: str | None = None
    phase: str | None = None
    acquisition: dict | None = None  # trained_range.Acquisition's fields (the scan's metadata)


@dataclass(frozen=True)
class Ready:
    """The worker has imported the detector and waits for jobs."""

    pid: int


@dataclass(frozen=True)
class Progress:
    job_id: int
    stage: str
    fraction: float


@dataclass(frozen=True)
class Done:
    """The result of ``job_id`` is in the job's result file."""

    job_id: int


@dataclass(frozen=True)
class Failed:
    """``job_id`` failed: bad input (``input``, the worker keeps serving), a bug in the detector
    (``internal``) or the worker process died (``crash``, reported by the client)."""

    job_id: int
    message: str
    kind: str = INTERNAL_ERROR


Message = Union[Job, Ready, Progress, Done, Failed]
_TYPES = {cls.__name__.lower(): cls for cls in (Job, Ready, Progress, Done, Failed)}


def encode(message: Message) -> str:
    """One JSON line (no newline) for ``message``."""
    return json.dumps({"type": type(message).__name__.lower(), **dataclasses.asdict(message)})


def decode(line: str) -> Message:
    """The message on ``line``; CMBDetectorError for anything that is not one."""
    try:
        data = json.loads(line)
        cls = _TYPES[data.pop("type")]
        return cls(**data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CMBDetectorError(f"Not a CMBDetector worker message: {line.strip()[:200]!r}") from exc


def config_to_dict(config: DetectorConfig) -> dict:
    """The settings as JSON values (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()}


def config_from_dict(data: dict) -> DetectorConfig:
    """Inverse of :func:`config_to_dict`: fields whose default is a path become paths again."""
    defaults = DetectorConfig()
    return DetectorConfig(**{k: Path(v) if v is not None and isinstance(getattr(defaults, k, None), Path) else v
                             for k, v in data.items()})


def _plain(value):
    """JSON-ready copy: numpy scalars -> float/int, NaN -> None, tuples -> lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def result_to_dict(result: DetectionResult) -> dict:
    data = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    data["detections"] = [dataclasses.asdict(d) for d in result.detections]
    data["geometry"] = result.geometry.ijk_to_ras.tolist()
    return _plain(data)


def result_from_dict(data: dict) -> DetectionResult:
    detections = [Detection(**{**d, "ras": tuple(d["ras"]), "ijk": tuple(d["ijk"])}) for d in data["detections"]]
    return DetectionResult(**{**data, "detections": detections, "geometry": Geometry(np.array(data["geometry"]))})


def write_result(path, result: DetectionResult) -> None:
    """Write ``result`` as JSON; the file appears complete or not at all."""
    atomic_write_text(path, json.dumps(result_to_dict(result)))


def read_result(path) -> DetectionResult:
    try:
        return result_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CMBDetectorError(f"The detector worker's result file '{path}' is missing or damaged ({exc}).") from exc


def registration_path(result_path) -> Path:
    """Where the location stage's registration goes, beside the result file (``..._registration.json``)."""
    path = Path(result_path)
    return path.with_name(f"{path.stem}_registration.json")


def write_registration(result_path, registration: AtlasRegistration) -> None:
    """Keep the registration that placed the points (its transform as an ITK ``.tfm`` file beside
    it), so that the atlas overlay after a worker run uses the same mapping and need not register again."""
    meta = registration_path(result_path)
    fields = {f.name: getattr(registration, f.name) for f in dataclasses.fields(registration) if f.name != "transform"}
    fields["transform"] = None
    if registration.transform is not None:
        transform = meta.with_suffix(".tfm")
        sitk.WriteTransform(registration.transform, str(transform))
        fields["transform"] = transform.name
    atomic_write_text(meta, json.dumps(_plain(fields)))


def read_registration(result_path) -> AtlasRegistration | None:
    """The registration :func:`write_registration` kept, or None when the location stage did not run."""
    meta = registration_path(result_path)
    if not meta.is_file():
        return None
    try:
        fields = json.loads(meta.read_text(encoding="utf-8"))
        name = fields.pop("transform")
        transform = None if name is None else sitk.ReadTransform(str(meta.with_name(name)))
        return AtlasRegistration(transform=transform, **fields)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CMBDetectorError(f"The detector worker's registration file '{meta}' is damaged ({exc}).") from exc
