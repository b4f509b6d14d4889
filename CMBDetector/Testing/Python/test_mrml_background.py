"""BackgroundDetection on a real MRML scene with the stand-in worker (``fake_worker``): the
result lands as the in-process path puts it; crash, cancel and a deleted input leave the scene
as it was."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorMRML import markups, tables, volumes
from CMBDetectorMRML.background import BackgroundDetection
from CMBDetectorMRML.logic import CMBDetectorLogic
from CMBDetectorMRML.worker_client import WorkerClient

import fake_worker
from test_logic import GEOMETRY, SHAPE, scene_state

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture
def volume(scene):
    array = np.random.default_rng(100_002).uniform(20, 300, SHAPE).astype(np.float32)
    return volumes.volume_from_array(scene, array, GEOMETRY, "scan")


@pytest.fixture
def client_for():
    made = []

    def make(mode: str, seconds: float = 0.2) -> WorkerClient:
        made.append(WorkerClient(command=[sys.executable, "-m", "fake_worker"], env={
            "PYTHONPATH": str(TESTS_DIR), "FAKE_DETECT": mode, "FAKE_DETECT_SECONDS": str(seconds)}))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_worker_result_gives_the_same_markups_and_table_as_in_process(volume, client_for, fake_detect):
    fake_detect(fake_worker.IJK, diameters=[3.0, 6.0, 2.0])
    logic = CMBDetectorLogic()
    local = logic.process(volume)
    run = BackgroundDetection(logic, client_for("ok"), volume)
    fractions = []
    while (update := run.poll()).out is None:  # as the panel's timer does
        fractions.append(update.fraction)
        time.sleep(0.02)
    remote = update.out
    assert fractions == sorted(fractions) and fractions[-1] > 0.5  # the run reported its progress
    assert remote.fiducialNode is not local.fiducialNode
    assert markups.points(remote.fiducialNode) == markups.points(local.fiducialNode)
    assert tables.rows_from_table(remote.tableNode) == tables.rows_from_table(local.tableNode)
    assert remote.fiducialNode.GetNodeReference(markups.VOLUME_ROLE) is volume
    assert not Path(run.job.result).parent.exists()  # the temporary folder is gone


def test_worker_run_keeps_the_registration_that_placed_the_points(volume, client_for, fake_detect):
    """The atlas overlay after a worker run uses the worker's registration (not a second one,
    made without the brain mask, that could disagree with the points' regions)."""
    fake_detect(fake_worker.IJK)
    out = BackgroundDetection(CMBDetectorLogic(), client_for("located"), volume).wait(timeout=30)
    expected = fake_worker.shift_registration()
    assert out.registration is not None and out.registration.ok and out.registration.dice == expected.dice
    ras = [markups.point_info(out.fiducialNode, i).ras for i in range(out.fiducialNode.GetNumberOfControlPoints())]
    np.testing.assert_allclose(out.registration.to_template(ras), expected.to_template(ras), atol=1e-9)
    plain = BackgroundDetection(CMBDetectorLogic(), client_for("ok"), volume).wait(timeout=30)
    assert plain.registration is None  # no location stage: the overlay registers on demand


def test_the_volume_acquisition_reaches_the_worker(volume, client_for):
    from CMBDetectorLib.trained_range import Acquisition
    from CMBDetectorMRML import acquisition_info

    acquisition_info.store(volume, Acquisition(7.0, 10.0))
    out = BackgroundDetection(CMBDetectorLogic(), client_for("ok"), volume).wait(timeout=30)
    assert any(w.endswith("Acquisition(field_strength_t=7.0, echo_time_ms=10.0)") for w in out.result.warnings)


def test_output_nodes_are_reused_and_a_deleted_one_is_replaced(volume, client_for, fake_detect):
    fake_detect(fake_worker.IJK)
    logic = CMBDetectorLogic()
    first = logic.process(volume)
    client = client_for("ok")
    again = BackgroundDetection(logic, client, volume, outputFiducialNode=first.fiducialNode,
                                outputTableNode=first.tableNode).wait(timeout=30)
    assert (again.fiducialNode, again.tableNode) == (first.fiducialNode, first.tableNode)
    run = BackgroundDetection(logic, client, volume, outputFiducialNode=first.fiducialNode)
    volume.GetScene().RemoveNode(first.fiducialNode)  # the user deletes the list during the run
    out = run.wait(timeout=30)
    assert out.fiducialNode.GetScene() is volume.GetScene() and out.fiducialNode is not first.fiducialNode
    assert out.fiducialNode.GetNumberOfControlPoints() == len(fake_worker.IJK)


@pytest.mark.parametrize("mode, message", [("crash", "killed by signal SIGKILL"),
                                           ("bad-input", "refused by the stand-in detector")])
def test_a_failed_run_leaves_the_scene_unchanged(volume, client_for, mode, message):
    before = scene_state(volume.GetScene())
    run = BackgroundDetection(CMBDetectorLogic(), client_for(mode), volume)
    with pytest.raises(CMBDetectorError, match=message):
        run.wait(timeout=30)
    assert scene_state(volume.GetScene()) == before
    assert not Path(run.job.result).parent.exists()


def test_cancel_leaves_the_scene_unchanged(volume, client_for):
    before = scene_state(volume.GetScene())
    client = client_for("busy")
    run = BackgroundDetection(CMBDetectorLogic(), client, volume)
    run.poll()
    assert run.cancel() < 1.0
    assert run.poll().out is None and not client.alive
    assert scene_state(volume.GetScene()) == before


def test_input_deleted_during_the_run_is_a_clear_error(volume, client_for):
    scene = volume.GetScene()
    run = BackgroundDetection(CMBDetectorLogic(), client_for("ok"), volume)
    scene.RemoveNode(volume)
    before = scene_state(scene)
    with pytest.raises(CMBDetectorError, match="'scan' was removed while the detector ran"):
        run.wait(timeout=30)
    assert scene_state(scene) == before
