"""Detector worker: a long-lived process that runs detection jobs read from stdin.

    PYTHONPATH=CMBDetector python -m CMBDetectorMRML.worker

Imports torch (and ultralytics when installed) once, prints :class:`~.worker_protocol.Ready`,
then runs each :class:`~.worker_protocol.Job` line with ``pipeline.detect``, reporting progress
and the outcome as protocol lines on stdout (:mod:`.worker_protocol`). Anything else written to
stdout, by Python or C code, goes to stderr. Bad input fails the job, not the worker. The worker
ends when stdin closes; a cancel kills it (:mod:`.worker_client`). No Slicer imports.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import IO, Callable

import numpy as np

from CMBDetectorLib import location, pipeline
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.trained_range import Acquisition

from . import worker_protocol as protocol

Send = Callable[[protocol.Message], None]
LOCATE_AT = 0.95  # progress fraction where the location stage starts (as in-process)


def protocol_stream() -> IO[str]:
    """A private copy of stdout for protocol lines; file descriptor 1 then points at stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return out


def warm_up() -> None:
    """Import the heavy libraries now, so jobs do not pay for it."""
    import torch  # noqa: F401

    try:
        import ultralytics  # noqa: F401
    except ImportError:  # only needed with YOLO rescoring; the job reports it if it is asked for
        pass


def _load(path: str | None) -> np.ndarray | None:
    return None if path is None else np.load(path, allow_pickle=False)


def run_job(job: protocol.Job, send: Send) -> None:
    """Detect on the job's arrays, write the result file, then send Done."""
    magnitude, geometry, mask = _load(job.magnitude), Geometry(np.array(job.ijk_to_ras)), _load(job.mask)
    config = protocol.config_from_dict(job.config)
    span = LOCATE_AT if config.locate else 1.0  # the registration takes seconds: leave it the end of the bar
    acquisition = Acquisition(**(job.acquisition or {}))
    result = pipeline.detect(
        magnitude, geometry, config, mask=mask, phase=_load(job.phase), acquisition=acquisition,
        progress=lambda stage, fraction: send(protocol.Progress(job.job_id, stage, span * fraction)))
    if config.locate:
        send(protocol.Progress(job.job_id, location.STAGE, LOCATE_AT))
        located = location.locate(result, magnitude, geometry, mask)
        result = located.result
        if located.registration is not None:
            protocol.write_registration(job.result, located.registration)
    protocol.write_result(job.result, result)
    send(protocol.Done(job.job_id))


def serve(lines: IO[str], out: IO[str]) -> None:
    """Announce Ready, then run every job line of ``lines`` until it closes."""

    def send(message: protocol.Message) -> None:
        out.write(protocol.encode(message) + "\n")
        out.flush()

    send(protocol.Ready(os.getpid()))
    for line in lines:
        if not line.strip():
            continue
        try:
            job = protocol.decode(line)
            if not isinstance(job, protocol.Job):
                raise CMBDetectorError(f"Expected a job, got {type(job).__name__}.")
        except CMBDetectorError as exc:
            print(f"CMBDetector worker: ignored a line: {exc}", file=sys.stderr, flush=True)
            continue
        try:
            run_job(job, send)
        except CMBDetectorError as exc:
            send(protocol.Failed(job.job_id, str(exc), protocol.INPUT_ERROR))
        except Exception as exc:  # a bug must reach the panel as a message, and not end the worker
            traceback.print_exc()
            send(protocol.Failed(job.job_id, f"{type(exc).__name__}: {exc}", protocol.INTERNAL_ERROR))


def main() -> None:
    out = protocol_stream()
    warm_up()
    serve(sys.stdin, out)


if __name__ == "__main__":
    main()
