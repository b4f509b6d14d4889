"""Run what :meth:`CMBDetectorLogic.process` does in the detector worker process, polled by the caller.

    client = WorkerClient()      # keep one per session: the worker stays warm between runs
    run = BackgroundDetection(logic, client, volumeNode, DetectorConfig(), phaseNode=phaseNode)
    update = run.poll()          # never blocks; call it from a timer
    update.stage, update.fraction, update.out   # out: the ProcessResult once loaded
    run.cancel()                 # kills the worker; the scene is as before
    out = run.wait()             # or block until done (scripts, tests)

The node arrays are copied on the calling (main) thread into ``.npy`` files in a private
temporary folder; the worker never sees the scene. The scene changes only when the result is
loaded, through the same :meth:`CMBDetectorLogic.loadResult` as the in-process path: a failure,
a crash or a cancel leaves it as it was.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from CMBDetectorLib.config import DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.trained_range import Acquisition

from . import worker_protocol as protocol
from .logic import CMBDetectorLogic, ProcessResult
from .worker_client import WorkerClient

_job_ids = itertools.count(1)


@dataclass(frozen=True)
class RunUpdate:
    """Where a background run stands: the pipeline's stage and 0-1 fraction, and ``out`` once
    its result is in the scene."""

    stage: str
    fraction: float
    out: ProcessResult | None = None


class BackgroundDetection:
    """One detection through the worker; raises CMBDetectorError from :meth:`poll` if it fails."""

    def __init__(self, logic: CMBDetectorLogic, client: WorkerClient, inputVolumeNode,
                 config: DetectorConfig | None = None, maskNode=None, outputFiducialNode=None,
                 outputTableNode=None, replace: bool = False, phaseNode=None):
        inputs = logic.detectorInputs(inputVolumeNode, maskNode, phaseNode, outputFiducialNode, outputTableNode)
        self.logic, self.client = logic, client
        self._nodes = (inputVolumeNode, outputFiducialNode, outputTableNode)
        self._replace = replace
        self._folder = Path(tempfile.mkdtemp(prefix="CMBDetector-"))
        try:
            files = {name: self._save(name, array) for name, array in
                     (("magnitude", inputs.array), ("mask", inputs.mask), ("phase", inputs.phase))}
            self.job = protocol.Job(
                job_id=next(_job_ids), ijk_to_ras=inputs.geometry.ijk_to_ras.tolist(),
                config=protocol.config_to_dict(config or DetectorConfig()),
                result=str(self._folder / "result.json"), acquisition=dataclasses.asdict(inputs.acquisition), **files)
            client.submit(self.job)
        except BaseException:
            self._cleanup()
            raise
        self.finished = False
        self._update = RunUpdate("Waiting for the detector" if client.ready else "Starting the detector", 0.0)

    def _save(self, name: str, array: np.ndarray | None) -> str | None:
        if array is None:
            return None
        path = self._folder / f"{name}.npy"
        np.save(path, array, allow_pickle=False)
        return str(path)

    def poll(self) -> RunUpdate:
        """Read the worker's news; on its result, create the output nodes and return them."""
        if self.finished:
            return self._update
        for message in self.client.poll():
            if getattr(message, "job_id", None) != self.job.job_id:
                continue
            if isinstance(message, protocol.Progress):
                self._update = RunUpdate(message.stage, message.fraction)
            elif isinstance(message, protocol.Done):
                try:
                    self._update = RunUpdate("Done", 1.0, self._load())
                finally:
                    self._finish()
                return self._update
            elif isinstance(message, protocol.Failed):
                self._finish()
                raise CMBDetectorError(message.message if message.kind != protocol.INTERNAL_ERROR
                                       else f"The detector failed: {message.message}")
        return self._update

    def _load(self) -> ProcessResult:
        result = protocol.read_result(self.job.result)
        volume, fiducials, table = self._nodes
        scene = volume.GetScene()
        if scene is None:
            raise CMBDetectorError(f"Input volume '{volume.GetName()}' was removed while the detector ran.")
        # Output nodes deleted during the run are replaced by new ones.
        fiducials, table = (n if n is not None and n.GetScene() is scene else None for n in (fiducials, table))
        registration = protocol.read_registration(self.job.result)  # for the atlas overlay, as in-process
        return self.logic.loadResult(volume, result, fiducials, table, self._replace, registration,
                                     Acquisition(**self.job.acquisition))  # what the worker was given

    def cancel(self) -> float:
        """Stop the run now (kills the worker); returns the seconds the worker took to go."""
        seconds = self.client.cancel() if not self.finished else 0.0
        self._finish()
        return seconds

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> ProcessResult:
        """Poll until the result is in the scene; on ``timeout`` seconds cancel and raise."""
        end = None if timeout is None else time.monotonic() + timeout
        while (update := self.poll()).out is None:
            if end is not None and time.monotonic() > end:
                self.cancel()
                raise CMBDetectorError(f"The detector did not finish within {timeout:.0f} s; it was stopped.")
            time.sleep(interval)
        return update.out

    def _finish(self) -> None:
        self.finished = True
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
