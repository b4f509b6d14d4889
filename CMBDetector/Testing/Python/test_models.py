"""Shipped weights load offline; missing or corrupt weights give a clear error."""

import shutil

import numpy as np
import pytest

from CMBDetectorLib.cnn import (CNN_WEIGHTS, CPU_BATCH, FOUR_VIEWS, PATCH_SIZE, PLAIN_PASS_SHARE, RESCORE_WEIGHTS,
                                CandidateClassifier, build_model, standardise, views)
from CMBDetectorLib.config import MODELS_DIR
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.patches import extract_patches
from CMBDetectorLib.yolo_rescore import YOLO_WEIGHTS, YoloRescorer


def test_shipped_weights_are_small_and_have_model_cards():
    cnn, yolo = MODELS_DIR / CNN_WEIGHTS, MODELS_DIR / YOLO_WEIGHTS
    assert cnn.stat().st_size < 2_000_000
    assert yolo.stat().st_size < 8_000_000
    assert (MODELS_DIR / RESCORE_WEIGHTS).stat().st_size < 2_000_000
    for card in ("cmb_cnn3d.md", "cmb_cnn3d_rescore.md", "cmb_yolo_rescore.md"):
        text = (MODELS_DIR / card).read_text()
        assert "synthetic" in text.lower() and "retrain" in text.lower()


@pytest.mark.parametrize("card, files", [("cmb_cnn3d.md", ("cmb_cnn3d.pt",)),
                                         ("cmb_cnn3d_rescore.md", ("cmb_cnn3d_rescore.pt",)),
                                         ("cmb_yolo_rescore.md", ("cmb_yolo_rescore.pt",)),
                                         ("cmb_fusion.md", ("cmb_fusion.json", "cmb_fusion_phase.json",
                                                            "cmb_fusion_noyolo.json", "cmb_fusion_noyolo_phase.json"))])
def test_model_cards_name_the_shipped_files_by_checksum(card, files):
    import hashlib

    text = (MODELS_DIR / card).read_text()
    for name in files:
        digest = hashlib.sha256((MODELS_DIR / name).read_bytes()).hexdigest()
        assert digest in text, f"{name} changed: update its sha256 (and figures) in {card}"


def test_cnn_scores_dark_sphere_above_flat_tissue():
    clf = CandidateClassifier(MODELS_DIR, "cpu")
    rng = np.random.default_rng(0)
    image = (1.0 + rng.normal(0, 0.03, (48, 48, 48))).astype(np.float32)
    k, j, i = np.indices(image.shape)
    image[(k - 24) ** 2 + (j - 24) ** 2 + (i - 24) ** 2 <= 4] = 0.15
    scores = clf.score(image, np.array([[24, 24, 24], [10, 10, 10]]))
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    assert scores[0] > scores[1]


def test_views_are_the_16_flips_and_transposes():
    cube = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    out = list(views(cube))
    assert len(out) == 16 and len({v.tobytes() for v in out}) == 16
    assert np.array_equal(out[0], cube)
    assert all(np.array_equal(np.sort(v, axis=None), np.sort(cube, axis=None)) for v in out)


def test_augmented_score_averages_logits_of_the_views_above_the_gate(tmp_path):
    import torch

    shutil.copy(MODELS_DIR / CNN_WEIGHTS, tmp_path / CNN_WEIGHTS)  # no rescoring CNN: 16 views
    clf = CandidateClassifier(tmp_path, "cpu")
    rng = np.random.default_rng(1)
    image = (1.0 + rng.normal(0, 0.05, (48, 48, 48))).astype(np.float32)
    k, j, i = np.indices(image.shape)
    image *= 1 - 0.85 * np.exp(-(((k - 24) / 1.3) ** 2 + (j - 22) ** 2 + (i - 25) ** 2) / 8)  # not symmetric
    kji = np.array([[24, 22, 25], [10, 10, 10]])
    plain = clf.score(image, kji, tta_gate=None)
    refined = clf.score(image, kji, tta_gate=0.5)
    cube = standardise(extract_patches(image, kji[:1], PATCH_SIZE))
    with torch.inference_mode():
        logits = [clf.model(torch.from_numpy(v[:, None]))[0, 0].item() for v in views(cube)]
    assert plain[0] >= 0.5 > plain[1]
    assert refined[0] == pytest.approx(1 / (1 + np.exp(-np.mean(logits))), abs=1e-5)
    assert refined[0] != pytest.approx(plain[0], abs=1e-4)
    assert refined[1] == plain[1]


def test_augmentation_refines_only_the_best_candidates_above_the_gate():
    # Three dark dots of different strength, all above a gate of ~0: with tta_max=1 only the one
    # the plain pass scores highest is rescored; the others keep their plain scores.
    clf = CandidateClassifier(MODELS_DIR, "cpu")
    rng = np.random.default_rng(2)
    image = (1.0 + rng.normal(0, 0.05, (48, 64, 48))).astype(np.float32)
    k, j, i = np.indices(image.shape)
    kji = np.array([[24, 14, 24], [24, 32, 23], [24, 50, 24]])
    for (kc, jc, ic), depth in zip(kji, (0.9, 0.6, 0.4)):
        image *= 1 - depth * np.exp(-(((k - kc) / 1.3) ** 2 + (j - jc) ** 2 + (i - ic + 0.5) ** 2) / 6)
    plain = clf.score(image, kji, tta_gate=None)
    every = clf.score(image, kji, tta_gate=1e-9)
    best = clf.score(image, kji, tta_gate=1e-9, tta_max=1)
    top = int(np.argmax(plain))
    assert best[top] == pytest.approx(every[top], abs=1e-6)
    others = [n for n in range(3) if n != top]
    np.testing.assert_allclose(best[others], plain[others], atol=1e-6)
    assert not np.allclose(every[others], plain[others], atol=1e-4)


def test_cpu_layout_and_batches_give_the_default_layouts_scores():
    # On the CPU both CNNs run channels-last in batches of CPU_BATCH; the scores must be those of
    # the default layout in one batch, the plain pass and the rescoring cascade alike, and a
    # candidate at the volume's edge must get the same padded cube in any batch.
    import torch

    clf = CandidateClassifier(MODELS_DIR, "cpu")
    assert clf.model[0][0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert clf.rescorer[0][0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    rng = np.random.default_rng(3)
    image = (1.0 + rng.normal(0, 0.05, (40, 48, 44))).astype(np.float32)
    k, j, i = np.indices(image.shape)
    kji = np.concatenate([rng.integers(0, image.shape, size=(CPU_BATCH + 7, 3)), [[0, 0, 0], [39, 47, 43]]])
    for kc, jc, ic in kji[:12]:
        image *= 1 - 0.7 * np.exp(-(((k - kc) / 1.3) ** 2 + (j - jc) ** 2 + (i - ic) ** 2) / 5)
    fast = clf.score(image, kji, tta_gate=1e-3)
    clf.layout = torch.contiguous_format
    clf.model, clf.rescorer = (m.to(memory_format=torch.contiguous_format) for m in (clf.model, clf.rescorer))
    default = clf.score(image, kji, batch_size=len(kji), tta_gate=1e-3)
    np.testing.assert_allclose(fast, default, atol=1e-5)
    assert len(np.unique(np.round(fast, 3))) > 10  # distinct scores, not a constant output


def test_model_parameter_budget():
    import torch

    model = build_model(16)
    assert sum(p.numel() for p in model.parameters()) < 400_000
    assert model(torch.zeros(2, 1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)).shape == (2, 1)


@pytest.mark.parametrize("loader, name", [(CandidateClassifier, CNN_WEIGHTS), (YoloRescorer, YOLO_WEIGHTS)])
def test_missing_and_corrupt_weights(tmp_path, loader, name):
    with pytest.raises(CMBDetectorError, match="not found"):
        loader(tmp_path, "cpu")
    shutil.copyfile(MODELS_DIR / name, tmp_path / name)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(CMBDetectorError, match=name):
        loader(tmp_path, "cpu")


def test_corrupt_rescoring_weights_are_named(tmp_path):
    for name in (CNN_WEIGHTS, RESCORE_WEIGHTS):
        shutil.copyfile(MODELS_DIR / name, tmp_path / name)
    data = (tmp_path / RESCORE_WEIGHTS).read_bytes()
    (tmp_path / RESCORE_WEIGHTS).write_bytes(data[: len(data) // 3])
    with pytest.raises(CMBDetectorError, match=RESCORE_WEIGHTS):
        CandidateClassifier(tmp_path, "cpu")


def test_cnn_reports_progress_per_batch():
    clf = CandidateClassifier(MODELS_DIR, "cpu")
    image = (1.0 + np.random.default_rng(2).normal(0, 0.05, (40, 40, 40))).astype(np.float32)
    seen = []
    clf.score(image, np.array([[14, 14, 14], [26, 26, 26]]), batch_size=1, tta_gate=1e-9, progress=seen.append)
    share = PLAIN_PASS_SHARE  # each batch of the plain pass, then of the rescoring pass
    assert seen == pytest.approx([0.0, share / 2, share, share + (1 - share) / 2])


def test_a_rescoring_cnn_scores_the_gated_candidates_over_four_views(tmp_path):
    import torch

    from CMBDetectorLib.training.widen import widen

    assert len(set(FOUR_VIEWS)) == 4 and all(sum(view[axis] for view in FOUR_VIEWS) == 2 for axis in range(4))
    assert CandidateClassifier(MODELS_DIR, "cpu").rescorer is not None  # the shipped cascade
    (tmp_path / "screen").mkdir()
    shutil.copy(MODELS_DIR / CNN_WEIGHTS, tmp_path / "screen" / CNN_WEIGHTS)
    shutil.copy(MODELS_DIR / CNN_WEIGHTS, tmp_path / CNN_WEIGHTS)
    shipped = CandidateClassifier(tmp_path / "screen", "cpu")  # a folder without a rescoring CNN
    assert shipped.rescorer is None
    wide = widen(shipped.model, 16, noise=0.2, seed=3)
    for module in wide.modules():  # another function than the screening CNN's
        if isinstance(module, torch.nn.Linear) and module.out_features == 1:
            module.bias.data += 0.5
    torch.save({"state_dict": wide.state_dict(), "width": 16}, tmp_path / RESCORE_WEIGHTS)
    cascade = CandidateClassifier(tmp_path, "cpu")
    rng = np.random.default_rng(1)
    image = (1.0 + rng.normal(0, 0.05, (48, 48, 48))).astype(np.float32)
    k, j, i = np.indices(image.shape)
    image *= 1 - 0.85 * np.exp(-(((k - 24) / 1.3) ** 2 + (j - 22) ** 2 + (i - 25) ** 2) / 8)
    kji = np.array([[24, 22, 25], [10, 10, 10]])
    plain = shipped.score(image, kji, tta_gate=None)
    refined = cascade.score(image, kji, tta_gate=0.5)
    cube = standardise(extract_patches(image, kji[:1], PATCH_SIZE))
    with torch.inference_mode():
        logits = [cascade.rescorer(torch.from_numpy(v[:, None]))[0, 0].item() for v in views(cube, FOUR_VIEWS)]
    assert refined[0] == pytest.approx(1 / (1 + np.exp(-np.mean(logits))), abs=1e-5)
    assert refined[0] != pytest.approx(shipped.score(image, kji, tta_gate=0.5)[0], abs=1e-3)
    assert refined[1] == plain[1]
