"""The learned score fusion: fit, save/load, bad files, the shipped weights, the training script."""

import json
import shutil

import numpy as np
import pytest

from CMBDetectorLib.config import MODELS_DIR
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.evaluation.metrics import roc_auc
from CMBDetectorLib.fusion import (FEATURES, FUSION_WEIGHTS, PHASE_FEATURES, PHASE_FUSION_WEIGHTS, ScoreFusion,
                                   feature_names, fusion_inputs, weights_file, without_yolo)


def test_no_candidates_give_empty_rows():
    x = fusion_inputs(np.zeros(0), np.zeros(0), False)
    assert x.shape == (0, len(FEATURES)) and ScoreFusion.load(MODELS_DIR).score(x).shape == (0,)


def test_fit_learns_the_informative_feature_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    y = (rng.random(n) < 0.1).astype(float)
    x = rng.normal(0, 1, (n, len(FEATURES)))
    x[:, 0] += 3 * y  # only the CNN logit carries the label
    fusion = ScoreFusion.fit(x, y)
    assert np.argmax(np.abs(fusion.weights)) == 0 and fusion.weights[0] > 0
    assert roc_auc(y.astype(bool), fusion.score(x)) > 0.95
    fusion.save(tmp_path / FUSION_WEIGHTS)
    again = ScoreFusion.load(tmp_path)
    np.testing.assert_allclose(again.score(x), fusion.score(x))


def test_fusion_without_yolo_fits_saves_and_loads_its_own_file(tmp_path):
    rng = np.random.default_rng(2)
    y = (rng.random(400) < 0.2).astype(float)
    cnn = 1 / (1 + np.exp(-(rng.normal(-2, 1, 400) + 4 * y)))
    x = fusion_inputs(cnn, rng.random(400), False, rng.normal(0, 0.5, 400) + y)
    assert without_yolo(x).shape == (400, 3)
    np.testing.assert_array_equal(without_yolo(x), fusion_inputs(cnn, None, False, x[:, -1]))
    features = feature_names(with_phase=True, with_yolo=False)
    assert features == ("cnn_logit", "thick_slices", "paramagnetic")
    fusion = ScoreFusion.fit(without_yolo(x), y, features=features)
    assert fusion.weights[0] > 0 and fusion.weights[2] > 0
    name = weights_file(with_phase=True, with_yolo=False)
    assert name == "cmb_fusion_noyolo_phase.json" and weights_file(False) == FUSION_WEIGHTS
    fusion.save(tmp_path / name)
    np.testing.assert_allclose(ScoreFusion.load(tmp_path, with_phase=True, with_yolo=False).score(without_yolo(x)),
                               fusion.score(without_yolo(x)))
    with pytest.raises(CMBDetectorError, match="not found"):  # only the no-YOLO file is there
        ScoreFusion.load(tmp_path, with_phase=True)
    with pytest.raises(ValueError, match="columns"):
        ScoreFusion.fit(x, y, features=features)


def test_shipped_fusions_without_yolo_rest_on_the_cnn_and_weigh_the_phase():
    plain = ScoreFusion.load(MODELS_DIR, with_yolo=False)
    assert plain.features == ("cnn_logit", "thick_slices")
    phase = ScoreFusion.load(MODELS_DIR, with_phase=True, with_yolo=False)
    assert phase.weights[phase.features.index("paramagnetic")] > 0
    for thick in (False, True):
        sure, doubtful = fusion_inputs(np.array([0.97, 0.05]), None, thick)
        assert plain.score(sure[None])[0] > 0.5 > plain.score(doubtful[None])[0]
    bleed, calcification = fusion_inputs(np.array([0.95, 0.95]), None, False, np.array([0.6, -0.6]))
    assert phase.score(bleed[None])[0] > phase.score(calcification[None])[0]


def test_fit_needs_both_classes():
    with pytest.raises(CMBDetectorError, match="both"):
        ScoreFusion.fit(np.zeros((5, len(FEATURES))), np.zeros(5))


def test_inputs_treat_a_missing_yolo_score_as_zero():
    x = fusion_inputs(np.array([0.9, 0.2]), np.array([np.nan, 0.0]), True)
    assert x.shape == (2, len(FEATURES)) and np.isfinite(x).all()
    assert x[0, FEATURES.index("yolo_logit")] == x[1, FEATURES.index("yolo_logit")]
    assert (x[:, FEATURES.index("thick_slices")] == 1).all()


def test_missing_corrupt_and_mismatched_fusion_weights(tmp_path):
    with pytest.raises(CMBDetectorError, match="not found"):
        ScoreFusion.load(tmp_path)
    shutil.copyfile(MODELS_DIR / FUSION_WEIGHTS, tmp_path / FUSION_WEIGHTS)
    text = (tmp_path / FUSION_WEIGHTS).read_text()
    (tmp_path / FUSION_WEIGHTS).write_text(text[: len(text) // 2])
    with pytest.raises(CMBDetectorError, match=FUSION_WEIGHTS):
        ScoreFusion.load(tmp_path)
    data = json.loads(text)
    data["features"] = data["features"][:-1]
    (tmp_path / FUSION_WEIGHTS).write_text(json.dumps(data))
    with pytest.raises(CMBDetectorError, match="differ"):
        ScoreFusion.load(tmp_path)


def test_shipped_fusion_rests_on_the_cnn_score():
    # With the flip-averaged CNN score the fit gives YOLO (almost) no weight (cmb_fusion.md).
    fusion = ScoreFusion.load(MODELS_DIR)
    weights = dict(zip(FEATURES, fusion.weights))
    assert weights["cnn_logit"] > 2 * max(abs(weights["yolo_logit"]), abs(weights["thick_slices"]))
    for yolo in (0.0, 0.5, 0.95):
        for thick in (False, True):
            sure, doubtful = fusion_inputs(np.array([0.97, 0.05]), np.array([yolo, yolo]), thick)
            assert fusion.score(sure[None])[0] > 0.5 > fusion.score(doubtful[None])[0]


def test_shipped_phase_fusion_rewards_paramagnetic_candidates():
    fusion = ScoreFusion.load(MODELS_DIR, with_phase=True)
    assert fusion.features == PHASE_FEATURES and fusion.weights[PHASE_FEATURES.index("paramagnetic")] > 0
    bleed, calcification = fusion_inputs(np.array([0.95, 0.95]), np.array([0.6, 0.6]), False, np.array([0.6, -0.6]))
    assert fusion.score(bleed[None])[0] > 0.5 > fusion.score(calcification[None])[0]


def test_phase_and_magnitude_fusions_are_not_interchangeable(tmp_path):
    shutil.copyfile(MODELS_DIR / FUSION_WEIGHTS, tmp_path / PHASE_FUSION_WEIGHTS)
    with pytest.raises(CMBDetectorError, match="differ"):
        ScoreFusion.load(tmp_path, with_phase=True)


def test_train_fusion_on_an_annotated_folder(tmp_path, capsys):
    from CMBDetectorLib.training.dataset import find_annotated_scans
    from CMBDetectorLib.training.train_fusion import fit
    from CMBDetectorLib.training.train_fusion import main as train_fusion_main

    from conftest import MODULE_DIR

    pairs = find_annotated_scans(MODULE_DIR / "Resources" / "SampleData")  # magnitude + phase + objects CSV
    assert len(pairs) == 1
    fit(pairs, MODELS_DIR, tmp_path, workers=1, rows=tmp_path / "rows.npz")
    data = json.loads((tmp_path / FUSION_WEIGHTS).read_text())
    assert data["n_scans"] == 1 and 1 <= data["n_positive"] < data["n_rows"]
    assert ScoreFusion.load(tmp_path).weights.shape == (len(FEATURES),)
    assert ScoreFusion.load(tmp_path, with_phase=True).weights.shape == (len(PHASE_FEATURES),)
    for with_phase in (False, True):  # the same rows without the YOLO column
        assert ScoreFusion.load(tmp_path, with_phase, with_yolo=False).features == feature_names(with_phase, False)
    # A second fit (another penalty) reuses the kept rows instead of rerunning the models.
    with np.load(tmp_path / "rows.npz") as rows:
        assert rows["x0"].shape == (data["n_rows"], len(PHASE_FEATURES))
    refit = fit(pairs, tmp_path / "no-models-here", tmp_path, workers=1, l2=10.0, rows=tmp_path / "rows.npz")
    assert json.loads((tmp_path / FUSION_WEIGHTS).read_text())["n_rows"] == data["n_rows"]
    assert np.abs(refit[0].weights).sum() < np.abs(np.asarray(data["weights"])).sum()
    # Rows kept from other sources are refused by name, not read as if they were these.
    with pytest.raises(CMBDetectorError, match="other sources"):
        fit(pairs + pairs, tmp_path, tmp_path, workers=1, rows=tmp_path / "rows.npz")
    with pytest.raises(SystemExit) as stop:  # the command line says so in one line
        train_fusion_main(["--synthetic", "1", "--out-dir", str(tmp_path), "--rows", str(tmp_path / "rows.npz")])
    assert stop.value.code == 2 and "other sources" in capsys.readouterr().err
