"""Training entry points on tiny data, and the benchmark's metrics on hand-checked cases."""

import numpy as np
import pytest
import torch

from CMBDetectorLib.cnn import PATCH_SIZE, CandidateClassifier, CNN_WEIGHTS, build_model
from CMBDetectorLib.evaluation.metrics import lesion_metrics, match_detections, roc_auc, subject_metrics
from CMBDetectorLib.training.train_cnn import (acquisition_augment, augment, echo_augment, epoch_indices, main,
                                               motion_augment, train)
from CMBDetectorLib.validation import load_checkpoint


def tiny_cube_set(path, n=48):
    rng = np.random.default_rng(0)
    cubes = (1.0 + rng.normal(0, 0.05, (n, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE))).astype(np.float16)
    labels = (np.arange(n) % 3 == 0).astype(np.float32)
    c = PATCH_SIZE // 2
    cubes[labels == 1, c - 2:c + 2, c - 2:c + 2, c - 2:c + 2] = 0.2
    np.savez(path, cubes=cubes, cube_labels=labels)
    return path


def test_train_cnn_writes_loadable_checkpoint_and_fine_tunes(tmp_path):
    data = tiny_cube_set(tmp_path / "cubes.npz")
    first = train([data], tmp_path / "a" / CNN_WEIGHTS, epochs=1, batch_size=16)
    assert 0.0 <= first["val_auc"] <= 1.0 and first["init"] == ""
    second = train([data, data], tmp_path / "b" / CNN_WEIGHTS, epochs=1, batch_size=16,
                   init=tmp_path / "a" / CNN_WEIGHTS, lr=1e-9, acquisition=True, motion=True, echo=True)
    assert second["init"].endswith(CNN_WEIGHTS) and second["n_train"] > first["n_train"] and second["lr"] == 1e-9
    assert second["acquisition_augment"] and not first["acquisition_augment"]
    assert second["motion_augment"] and not first["motion_augment"]
    assert second["echo_augment"] and not first["echo_augment"]
    for name, weights in first["state_dict"].items():  # a vanishing rate leaves the starting weights
        if weights.is_floating_point() and "running" not in name:
            assert torch.allclose(weights, second["state_dict"][name], atol=1e-6), name
    assert all(w.is_contiguous() for w in second["state_dict"].values())  # trained channels-last, saved in the default layout
    scores = CandidateClassifier(tmp_path / "b", "cpu").score(np.ones((30, 30, 30), np.float32), np.array([[15, 15, 15]]))
    assert scores.shape == (1,)


def test_train_cnn_command_line_sets_the_width(tmp_path):
    data = tiny_cube_set(tmp_path / "cubes.npz")
    main([str(data), "--epochs", "1", "--width", "4", "--device", "cpu", "--out", str(tmp_path / "w4.pt")])
    checkpoint = load_checkpoint(tmp_path / "w4.pt", required_keys=("state_dict", "width"))
    assert checkpoint["width"] == 4 and checkpoint["state_dict"]["0.0.weight"].shape[0] == 4


def lesion_cubes(n=4):
    """Standardised cubes: tissue at the median (0), a 3-voxel dark core, the first 4 slices outside the brain (-1)."""
    cubes = np.zeros((n, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE), np.float32)
    c = PATCH_SIZE // 2
    cubes[:, c - 1:c + 2, c - 1:c + 2, c - 1:c + 2] = -0.6
    cubes[:, :4] = -1.0
    return cubes


def test_acquisition_augment_moves_each_knob_and_leaves_outside_the_brain():
    cubes, c = lesion_cubes(), PATCH_SIZE // 2
    off = dict(gain=(1.0, 1.0), p_noise=0.0, p_blur=0.0)
    assert np.allclose(acquisition_augment(cubes, np.random.default_rng(0), **off), cubes, atol=1e-6)
    dim = acquisition_augment(cubes, np.random.default_rng(0), **{**off, "gain": (0.8, 0.8)})
    assert np.allclose(dim[:, 10:, :4, :4], -0.2) and np.allclose(dim[:, c, c, c], 0.4 * 0.8 - 1)
    noisy = acquisition_augment(cubes, np.random.default_rng(0), **{**off, "p_noise": 1.0})
    assert 0.0 < noisy[:, 10:, :4, :4].std() < 0.1
    blurred = acquisition_augment(cubes, np.random.default_rng(0), **{**off, "p_blur": 1.0, "blur": (1.0, 1.0)})
    assert blurred[:, c, c, c].min() > -0.6 + 0.05  # the core is smeared along the slice axis...
    assert blurred[:, c - 2, c, c].max() < -0.1  # ...onto the slices beside it
    assert np.allclose(blurred[:, c, c, c - 3], 0, atol=1e-6)  # but not within the slice
    for out in (dim, noisy, blurred):
        assert np.all(out[:, :4] == -1.0)


def test_echo_augment_darkens_and_blooms_the_core_and_leaves_outside_the_brain():
    cubes, c = lesion_cubes(), PATCH_SIZE // 2
    assert np.allclose(echo_augment(cubes, np.random.default_rng(0), factor=(1.0, 1.0), p_echo=1.0), cubes, atol=1e-6)
    assert np.array_equal(echo_augment(cubes, np.random.default_rng(0), p_echo=0.0), cubes)
    longer = echo_augment(cubes, np.random.default_rng(0), factor=(2.0, 2.0), p_echo=1.0)
    assert np.allclose(longer[:, c, c, c], 0.4 ** 2 - 1, atol=1e-5)  # a longer echo: the core darker...
    core = (slice(None), slice(c - 4, c + 5))  # the lesion's slices, away from the brain's edge
    assert ((longer[core] < -0.3).sum(axis=(1, 2, 3)) > (cubes[core] < -0.3).sum(axis=(1, 2, 3))).all()  # ...larger
    assert np.allclose(longer[:, c, c, 2:5], 0, atol=1e-6)  # the tissue at the median stays there
    assert np.allclose(longer[:, 0], -1.0)  # outside the brain stays outside
    shorter = echo_augment(cubes, np.random.default_rng(0), factor=(0.5, 0.5), p_echo=1.0)
    assert np.allclose(shorter[:, c, c, c], 0.4 ** 0.5 - 1, atol=1e-5)  # a shorter one: fainter


def test_motion_augment_ghosts_within_the_slice_and_fills_the_core():
    cubes, c = lesion_cubes(8), PATCH_SIZE // 2
    assert np.allclose(motion_augment(cubes, np.random.default_rng(0), rms=(0.0, 0.0), p_motion=1.0), cubes, atol=1e-6)
    ghosted = motion_augment(cubes, np.random.default_rng(0), rms=(1.0, 1.0), p_motion=1.0, fraction=0.5)
    rise = ghosted[:, c, c, c] - cubes[:, c, c, c]
    assert rise.min() > -0.01 and rise.mean() > 0.05  # the dark core is filled in...
    lesion_slices = ghosted[:, c - 1:c + 2].copy()
    lesion_slices[:, :, c - 1:c + 2, c - 1:c + 2] = 0
    assert np.abs(lesion_slices).max(axis=(1, 2, 3)).min() > 0.02  # ...its ghosts spread along a line in the slice
    assert np.allclose(ghosted[:, 4:c - 1], 0, atol=1e-5)  # slices without the lesion keep their even tissue
    assert np.allclose(ghosted[:, :4], -1.0, atol=1e-5)  # and outside the brain stays outside
    none = motion_augment(cubes, np.random.default_rng(0), p_motion=0.0)
    assert np.array_equal(none, cubes)


@pytest.mark.parametrize("acquisition, motion, echo", [(False, False, False), (True, False, False),
                                                     (False, False, True), (True, True, True)])
def test_augment_returns_new_cubes_and_leaves_the_batch(acquisition, motion, echo):
    cubes = lesion_cubes()
    before = cubes.copy()
    out = augment(cubes, np.random.default_rng(0), acquisition, motion, echo)
    assert out is not cubes and out.shape == cubes.shape and out.dtype == np.float32
    assert np.array_equal(cubes, before)  # the flips and transposes never write into the training set
    assert not np.array_equal(out, cubes)


def test_epoch_sample_keeps_all_positives_and_limits_negatives():
    labels = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1], dtype=np.float32)
    sample = epoch_indices(labels, np.arange(10), np.random.default_rng(0), negatives_per_positive=2)
    assert sorted(sample[labels[sample] == 1]) == [0, 9]
    assert (labels[sample] == 0).sum() == 4 and len(set(sample)) == len(sample)


def test_roc_auc_known_values():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_match_is_one_to_one_best_score_first():
    gt = np.array([[0.0, 0, 0], [20.0, 0, 0]])
    det = np.array([[1.0, 0, 0], [0.5, 0, 0], [30.0, 0, 0]])
    matched = match_detections(det, np.array([0.6, 0.9, 0.8]), gt, np.array([3.0, 3.0]))
    assert matched.tolist() == [-1, 0, -1]  # duplicate and far detection are false positives
    m = lesion_metrics(int((matched >= 0).sum()), int((matched < 0).sum()), len(gt), n_scans=2)
    assert m["sensitivity"] == 0.5 and m["precision"] == pytest.approx(1 / 3) and m["fp_per_scan"] == 1.0


def test_subject_metrics():
    m = subject_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]), np.array([0.9, 0.2, 0.6, 0.1]))
    assert m["sensitivity"] == 0.5 and m["specificity"] == 0.5 and m["balanced_accuracy"] == 0.5
    assert m["f1"] == pytest.approx(0.5) and m["auc"] == pytest.approx(0.75)


def test_train_yolo_fine_tunes_from_the_given_checkpoint(tmp_path):
    from CMBDetectorLib.config import MODELS_DIR
    from CMBDetectorLib.training.train_yolo import train as train_yolo
    from CMBDetectorLib.yolo_rescore import IMAGE_SIZE, YOLO_WEIGHTS, read_views, views_file

    rng = np.random.default_rng(0)
    crops = np.full((8, IMAGE_SIZE, IMAGE_SIZE, 3), 128, np.uint8)
    crops[::2, 40:56, 40:56] = 20
    boxes = np.tile([[0.5, 0.5, 0.2, 0.2]], (4, 1)).astype(np.float32)
    np.savez(tmp_path / "crops.npz", crops=(crops + rng.integers(0, 5, crops.shape)).astype(np.uint8),
             box_counts=np.array([1, 0] * 4), boxes=boxes)
    out = train_yolo([tmp_path / "crops.npz"], tmp_path / YOLO_WEIGHTS, epochs=1, batch=4,
                     init=MODELS_DIR / YOLO_WEIGHTS)

    def weights(path):
        model = torch.load(path, map_location="cpu", weights_only=False)["model"]
        return torch.cat([p.detach().float().ravel() for p in model.parameters()])

    # One short epoch moves the shipped weights by < 0.01; a restart from yolov8n.yaml is ~1 away.
    assert (weights(MODELS_DIR / YOLO_WEIGHTS) - weights(out)).abs().max() < 0.05
    assert read_views(out) == "axial" and views_file(out).is_file()  # crops without the key are axial


@pytest.mark.parametrize("args, why", [(["--validation", "--stress"], "use --wide"),
                                       (["--first", "12"], "reported from the first one"),
                                       (["--mid-slices"], "use them with --validation"),
                                       (["--shifted"], "use them with --validation"),
                                       (["--validation", "--shifted", "--mid-slices"], "choose one protocol draw")])
def test_benchmark_keeps_test_seeds_apart_from_choosing(args, why):
    """The stress seeds never enter validation, and the test seeds cannot be re-rolled by block."""
    import subprocess
    import sys

    from conftest import MODULE_DIR

    run = subprocess.run([sys.executable, str(MODULE_DIR.parent / "scripts" / "benchmark.py"), *args,
                          "--n", "1", "--no-profile"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and why in run.stderr and "Traceback" not in run.stderr


def test_widening_keeps_the_function_and_lets_the_copies_learn_apart():
    from CMBDetectorLib.training.widen import widen

    torch.manual_seed(0)
    narrow = build_model(4)
    for module in narrow.modules():  # running statistics away from the defaults, as after training
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    wide = widen(narrow, 8, noise=0.05)
    x = torch.randn(3, 1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
    narrow.eval()
    wide.eval()
    with torch.no_grad():
        assert torch.allclose(narrow(x), wide(x), atol=1e-4)
    second = wide[0][3].weight  # the copies' shares differ, so their gradients do too
    assert second.shape == (8, 8, 3, 3, 3) and not torch.allclose(second[:, 0], second[:, 1])
    wide.train()
    wide(x).sum().backward()
    first = wide[0][0].weight.grad
    assert not torch.allclose(first[0], first[1])
    with pytest.raises(ValueError, match="multiple of 4, not to 6"):
        widen(narrow, 6)


def test_train_cnn_widens_a_narrower_starting_checkpoint(tmp_path):
    import subprocess
    import sys

    from conftest import MODULE_DIR

    data = tiny_cube_set(tmp_path / "cubes.npz")
    main([str(data), "--epochs", "1", "--width", "4", "--device", "cpu", "--out", str(tmp_path / "w4.pt")])
    main([str(data), "--epochs", "1", "--width", "8", "--lr", "1e-9", "--init", str(tmp_path / "w4.pt"),
          "--device", "cpu", "--out", str(tmp_path / "w8.pt")])
    narrow = load_checkpoint(tmp_path / "w4.pt", required_keys=("state_dict",))["state_dict"]
    wide = load_checkpoint(tmp_path / "w8.pt", required_keys=("state_dict", "width"))
    assert wide["width"] == 8
    assert torch.allclose(wide["state_dict"]["0.0.weight"], narrow["0.0.weight"].repeat_interleave(2, dim=0), atol=1e-6)
    for bad in ("2", "12"):  # narrower than the start, or not a multiple of it: a clear error, no traceback
        run = subprocess.run([sys.executable, "-m", "CMBDetectorLib.training.train_cnn", str(data), "--epochs", "1",
                              "--width", bad, "--init", str(tmp_path / "w8.pt"), "--out", str(tmp_path / "bad.pt")],
                             capture_output=True, text=True, timeout=120, cwd=MODULE_DIR)
        assert run.returncode == 2 and f"not width {bad}" in run.stderr and "Traceback" not in run.stderr
        assert not (tmp_path / "bad.pt").exists()


def test_profile_prints_one_line_per_run_in_one_process(tmp_path, fake_detect, capsys):
    """``evaluation.profile --repeat 3``: the first run cold, the others reusing the process."""
    import json

    from CMBDetectorLib.evaluation import profile
    from CMBDetectorLib.geometry import Geometry, write_image

    image = tmp_path / "scan.nii.gz"
    write_image(image, np.ones((6, 8, 8), np.float32), Geometry.from_parts((1.0, 1.0, 2.0)))
    calls = fake_detect([[2, 3, 1], [5, 5, 4]])
    profile.main([str(image), "--repeat", "3"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["run"] for r in rows] == [1, 2, 3] and len(calls) == 3
    assert all(r["detections"] == 2 and r["shape_ijk"] == [8, 8, 6] and r["total_s"] >= 0 for r in rows)
