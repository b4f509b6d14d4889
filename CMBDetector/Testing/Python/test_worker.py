"""The detector worker protocol as plain subprocesses (no Slicer): messages, progress, result
files, bad input, cancel timing, crashes and a worker killed mid-run.

The worker runs ``fake_worker`` (the real worker loop with a stand-in detector, no torch);
``test_real_worker_*`` starts the real ``python -m CMBDetectorMRML.worker`` once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from CMBDetectorLib import location
from CMBDetectorLib.config import DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.results import Detection, DetectionResult
from CMBDetectorMRML import worker
from CMBDetectorMRML import worker_protocol as protocol
from CMBDetectorMRML.worker_client import WorkerClient

import fake_worker

TESTS_DIR = Path(__file__).resolve().parent
GEOMETRY = Geometry.from_parts(spacing=(0.9, 0.9, 2.0), origin=(90.0, -110.0, -40.0),
                               direction=np.diag([-1.0, 1.0, 1.0]))
CANCEL_LIMIT_S = 1.0


def fake_client(mode: str = "ok", seconds: float = 0.5) -> WorkerClient:
    return WorkerClient(command=[sys.executable, "-m", "fake_worker"],
                        env={"PYTHONPATH": str(TESTS_DIR), "FAKE_DETECT": mode, "FAKE_DETECT_SECONDS": str(seconds)})


def make_job(tmp_path: Path, job_id: int = 1, with_phase: bool = False) -> protocol.Job:
    array = np.random.default_rng(100_001).uniform(20, 300, (20, 32, 32)).astype(np.float32)
    np.save(tmp_path / "mag.npy", array)
    phase = None
    if with_phase:
        phase = str(tmp_path / "phase.npy")
        np.save(phase, np.zeros_like(array))
    return protocol.Job(job_id=job_id, magnitude=str(tmp_path / "mag.npy"), ijk_to_ras=GEOMETRY.ijk_to_ras.tolist(),
                        config=protocol.config_to_dict(DetectorConfig()), result=str(tmp_path / f"result{job_id}.json"),
                        phase=phase, acquisition={"field_strength_t": 7.0, "echo_time_ms": None} if with_phase else None)


def collect(client: WorkerClient, until, timeout: float = 30.0) -> list:
    """Poll like a GUI timer until ``until(message)`` is true for a message; return them all."""
    messages, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        for message in client.poll():
            messages.append(message)
            if until(message):
                return messages
        time.sleep(0.02)
    raise AssertionError(f"no final message within {timeout} s; got {messages}")


def finished(message) -> bool:
    return isinstance(message, (protocol.Done, protocol.Failed))


@pytest.fixture
def clients():
    made = []
    yield lambda *args, **kwargs: made.append(fake_client(*args, **kwargs)) or made[-1]
    for client in made:
        client.close()


# --- messages and result files ---------------------------------------------------------------

def test_messages_round_trip_and_garbage_is_refused(tmp_path):
    for message in (make_job(tmp_path, 7, with_phase=True), protocol.Ready(12), protocol.Progress(7, "3D CNN", 0.6),
                    protocol.Done(7), protocol.Failed(7, "bad\nthing", protocol.INPUT_ERROR)):
        line = protocol.encode(message)
        assert "\n" not in line and protocol.decode(line) == message
    for garbage in ("", "hello", '{"type": "nonsense"}', '{"type": "done"}', "[1, 2]"):
        with pytest.raises(CMBDetectorError, match="Not a CMBDetector worker message"):
            protocol.decode(garbage)
    config = DetectorConfig(sensitivity="high", threshold=0.3, use_yolo=False, phase_convention="left-handed")
    assert protocol.config_from_dict(protocol.config_to_dict(config)) == config


def test_result_file_round_trip_is_exact(tmp_path):
    detections = [Detection(ras=(np.float32(1.5), -2.25, 3.0), ijk=(4.0, 5.0, 6.0), diameter_mm=3.2,
                            candidate_score=0.7, cnn_score=np.float32(0.91), yolo_score=None, score=0.8,
                            location="deep", paramagnetic_score=-0.4),
                  Detection(ras=(0.1, 0.2, 0.3), ijk=(1.0, 2.0, 3.0), diameter_mm=2.0, candidate_score=0.5,
                            cnn_score=0.6, yolo_score=0.7, score=0.65)]
    result = DetectionResult(detections=detections, geometry=GEOMETRY, timings={"cnn": 1.25}, warnings=["w"],
                             n_candidates=42, device="cpu", threshold=0.4, scan_threshold=0.9, used_phase=True)
    protocol.write_result(tmp_path / "r.json", result)
    back = protocol.read_result(tmp_path / "r.json")
    assert back.detections == [Detection(**{**d.__dict__, "ras": tuple(float(v) for v in d.ras),
                                            "cnn_score": float(d.cnn_score)}) for d in detections]
    np.testing.assert_array_equal(back.geometry.ijk_to_ras, GEOMETRY.ijk_to_ras)
    assert (back.timings, back.warnings, back.n_candidates, back.threshold, back.used_phase) == (
        {"cnn": 1.25}, ["w"], 42, 0.4, True)
    (tmp_path / "r.json").write_text('{"detections": [')
    with pytest.raises(CMBDetectorError, match="missing or damaged"):
        protocol.read_result(tmp_path / "r.json")


# --- the worker process ----------------------------------------------------------------------

def test_registration_file_round_trip_keeps_the_mapping(tmp_path):
    import SimpleITK as sitk

    from CMBDetectorLib.registration import AtlasRegistration

    reference = sitk.Image([12, 12, 12], sitk.sitkFloat32)
    reference.SetSpacing((8.0, 8.0, 8.0))
    reference.SetOrigin((-48.0, -48.0, -48.0))
    bspline = sitk.BSplineTransformInitializer(reference, [3, 3, 3], order=3)
    params = np.random.default_rng(100_003).normal(0, 2.0, len(bspline.GetParameters()))
    bspline.SetParameters(params.tolist())
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((1.05, 0.02, 0.0, -0.03, 0.97, 0.01, 0.0, 0.04, 1.02))
    affine.SetTranslation((2.5, -1.0, 3.0))
    registration = AtlasRegistration(sitk.CompositeTransform([affine, bspline]), True, "ok", 0.94, 0.8, -0.5, 6.2)
    result = tmp_path / "result.json"
    assert protocol.read_registration(result) is None  # the location stage did not run
    protocol.write_registration(result, registration)
    back = protocol.read_registration(result)
    assert (back.ok, back.message, back.dice, back.brain_fraction, back.metric, back.seconds) == (
        True, "ok", 0.94, 0.8, -0.5, 6.2)
    points = [(10.0, -20.0, 15.0), (-30.0, 5.0, -12.0), (0.0, 0.0, 0.0)]
    np.testing.assert_allclose(back.to_template(points), registration.to_template(points), atol=1e-6)
    protocol.write_registration(result, AtlasRegistration(None, False, "partial coverage"))
    failed = protocol.read_registration(result)
    assert (failed.transform, failed.ok, failed.message) == (None, False, "partial coverage")
    protocol.registration_path(result).write_text("{", encoding="utf-8")
    with pytest.raises(CMBDetectorError, match="registration file"):
        protocol.read_registration(result)


def test_progress_lines_arrive_in_order_and_the_result_file_holds_the_detections(tmp_path, clients):
    client = clients("ok", 0.2)
    job = make_job(tmp_path, with_phase=True)
    client.submit(job)
    assert client.busy and client.alive
    messages = collect(client, finished)
    assert isinstance(messages[0], protocol.Ready) and client.ready
    progress = [m for m in messages if isinstance(m, protocol.Progress)]
    # the location stage (seconds of registration) has its own line, not a bar stuck at 100 %
    assert [m.stage for m in progress] == [f"Step {n}" for n in range(fake_worker.STEPS + 1)] + [location.STAGE]
    assert [m.fraction for m in progress] == sorted(m.fraction for m in progress)
    assert progress[-2].fraction == progress[-1].fraction == worker.LOCATE_AT
    assert messages[-1] == protocol.Done(job.job_id) and not client.busy
    result = protocol.read_result(job.result)
    np.testing.assert_allclose([d.ijk for d in result.detections], fake_worker.IJK)
    np.testing.assert_allclose([d.ras for d in result.detections], GEOMETRY.ijk_to_ras_points(fake_worker.IJK))
    total = float(np.load(job.magnitude).sum())
    # the worker read the job's arrays and passed its acquisition on
    assert result.warnings == [f"mask False, phase True, sum {total:.1f}, "
                               "Acquisition(field_strength_t=7.0, echo_time_ms=None)"]


def test_worker_stays_warm_and_survives_bad_input(tmp_path, clients):
    client = clients("bad-input")
    client.submit(make_job(tmp_path, 1))
    failed = collect(client, finished)[-1]
    assert failed.kind == protocol.INPUT_ERROR and "refused by the stand-in detector" in failed.message
    pid = client.pid
    client.submit(make_job(tmp_path, 2))
    messages = collect(client, finished)
    assert messages[-1].job_id == 2 and client.pid == pid and client.alive
    assert not any(isinstance(m, protocol.Ready) for m in messages)  # no second start-up
    with pytest.raises(CMBDetectorError):  # the client runs one job at a time
        client.submit(make_job(tmp_path, 3))
        client.submit(make_job(tmp_path, 4))


def test_cancel_kills_a_busy_worker_within_a_second(tmp_path, clients):
    client = clients("busy")
    client.submit(make_job(tmp_path))
    collect(client, lambda m: isinstance(m, protocol.Ready))
    time.sleep(0.3)  # inside the stand-in's compute loop, which never reports progress
    pid = client.pid
    start = time.perf_counter()
    reported = client.cancel()
    elapsed = time.perf_counter() - start
    assert reported <= elapsed < CANCEL_LIMIT_S
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not client.busy and not client.alive
    assert client.poll() == []  # a cancel is not reported as a crash
    assert not Path(make_job(tmp_path).result).exists()


def test_worker_that_dies_mid_run_gives_a_clear_error(tmp_path, clients):
    client = clients("crash")
    job = make_job(tmp_path)
    client.submit(job)
    failed = collect(client, finished)[-1]
    assert failed == protocol.Failed(job.job_id, failed.message, protocol.CRASH)
    assert "killed by signal SIGKILL" in failed.message and "scene was not changed" in failed.message
    assert "fake worker starting" in failed.message  # the worker's last output is quoted
    assert not client.busy and not client.alive and not Path(job.result).exists()


def test_worker_killed_from_outside_is_reported_and_replaced(tmp_path, clients):
    client = clients("ok", 30.0)
    client.submit(make_job(tmp_path, 1))
    collect(client, lambda m: isinstance(m, protocol.Progress))
    old_pid = client.pid
    os.kill(old_pid, signal.SIGKILL)
    start = time.monotonic()
    failed = collect(client, finished, timeout=5.0)[-1]
    assert failed.kind == protocol.CRASH and "SIGKILL" in failed.message
    assert time.monotonic() - start < 2.0
    client.submit(make_job(tmp_path, 2))  # the next job gets a fresh worker
    assert client.alive and client.pid != old_pid
    client.cancel()


def test_real_worker_runs_the_detector(tmp_path):
    """The shipped entry point: imports torch, says Ready, runs one job of the real pipeline."""
    client = WorkerClient()
    try:
        job = make_job(tmp_path)
        client.submit(job)
        messages = collect(client, finished, timeout=120.0)
    finally:
        client.close()
    assert isinstance(messages[0], protocol.Ready)
    assert messages[-1] == protocol.Done(job.job_id), messages[-1]
    stages = [m.stage for m in messages if isinstance(m, protocol.Progress)]
    assert stages[0] == "Checking input" and stages[-2:] == ["Done", location.STAGE]
    result = protocol.read_result(job.result)
    np.testing.assert_array_equal(result.geometry.ijk_to_ras, GEOMETRY.ijk_to_ras)
    assert result.n_candidates >= result.count

