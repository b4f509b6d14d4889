"""Per-scan alignment of the CNNs' batch-norm statistics to a reference (CMBDetectorLib.adaptation)."""

import shutil

import numpy as np
import pytest

from CMBDetectorLib.adaptation import (REFERENCE_FILE, FeatureReference, LayerStatistics, adapted, sample_indices,
                                       scan_statistics)
from CMBDetectorLib.cnn import CNN_WEIGHTS, RESCORE_WEIGHTS, CandidateClassifier, build_model
from CMBDetectorLib.config import MODELS_DIR
from CMBDetectorLib.errors import CMBDetectorError


def _model(seed=0):
    import torch

    torch.manual_seed(seed)
    model = build_model(8)
    model.train()
    with torch.no_grad():  # running statistics unlike the cubes' below
        for _ in range(3):
            model(torch.randn(8, 1, 24, 24, 24) * 0.5 + 0.2)
    return model.eval()


def _cubes(scale=0.2, offset=0.0, seed=1):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(48, 1, 24, 24, 24, generator=g) * scale + offset


def test_a_scan_like_the_reference_is_scored_as_before_and_the_model_is_not_changed():
    import torch

    model, x = _model(), _cubes()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    aligned = adapted(model, x, scan_statistics(model, x))
    with torch.inference_mode():
        assert torch.allclose(aligned(x), model(x), atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_each_layer_gives_a_shifted_scan_the_references_output_statistics():
    import torch

    model, x = _model(), _cubes()
    y = _cubes(scale=0.35, offset=-0.3, seed=2)  # another contrast and level (variance ratio < 4)
    aligned = adapted(model, y, scan_statistics(model, x))
    with torch.inference_mode():
        ref, out = model[0][1](model[0][0](x)), aligned[0][1](aligned[0][0](y))
        plain = model[0][1](model[0][0](y))
    assert torch.allclose(ref.mean(dim=(0, 2, 3, 4)), out.mean(dim=(0, 2, 3, 4)), atol=1e-4)
    assert torch.allclose(ref.var(dim=(0, 2, 3, 4)), out.var(dim=(0, 2, 3, 4)), rtol=1e-3)
    assert not torch.allclose(ref.var(dim=(0, 2, 3, 4)), plain.var(dim=(0, 2, 3, 4)), rtol=0.5)


def test_sample_indices_spread_over_the_candidates():
    assert list(sample_indices(5, 256)) == [0, 1, 2, 3, 4]
    idx = sample_indices(5000, 256)
    assert len(idx) == 256 and idx[0] == 0 and idx[-1] == 4999 and np.all(np.diff(idx) > 0)
    assert len(sample_indices(0)) == 0


def _folder_with_reference(tmp_path, reference):
    for name in (CNN_WEIGHTS, RESCORE_WEIGHTS):
        shutil.copy(MODELS_DIR / name, tmp_path / name)
    reference.save(tmp_path / REFERENCE_FILE)
    return tmp_path


def test_the_classifier_aligns_only_for_a_modality_the_reference_has(tmp_path):
    shipped = CandidateClassifier(MODELS_DIR, "cpu")
    rng = np.random.default_rng(3)
    image = (1.0 + rng.normal(0, 0.04, (60, 60, 60))).astype(np.float32)
    k, j, i = np.indices(image.shape)
    image *= 1 - 0.8 * np.exp(-((k - 30) ** 2 + (j - 30) ** 2 + (i - 30) ** 2) / 6)
    kji = np.stack(np.meshgrid(*[np.arange(12, 49, 6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    kji[0] = (30, 30, 30)
    # a reference whose statistics are those of a noisier scan: this scan gets realigned
    noisy = (1.0 + rng.normal(0, 0.12, image.shape)).astype(np.float32)
    x = shipped._tensor(np.stack([noisy[n:n + 24, :24, :24] for n in range(0, 36, 3)]) - 1.0)
    stats = {("screen", "swi"): scan_statistics(shipped.model, x), ("rescore", "swi"): scan_statistics(shipped.rescorer, x)}
    folder = _folder_with_reference(tmp_path, FeatureReference(stats, {key: 1 for key in stats}))
    loaded = FeatureReference.load(folder / REFERENCE_FILE)
    assert set(loaded.statistics) == set(stats) and loaded.n_scans[("screen", "swi")] == 1
    assert np.allclose(loaded.get("screen", "swi").variances[2], stats[("screen", "swi")].variances[2])
    clf = CandidateClassifier(folder, "cpu")
    base = shipped.score(image, kji)
    assert np.array_equal(clf.score(image, kji), base)  # no modality named: as loaded
    assert np.array_equal(clf.score(image, kji, modality="gre"), base)  # none for 2D GRE in this reference
    assert np.abs(clf.score(image, kji, modality="swi") - base).max() > 1e-3
    assert np.array_equal(clf.score(image, kji[:10], modality="swi"), shipped.score(image, kji[:10]))  # too few


def test_a_corrupt_reference_is_named(tmp_path):
    (tmp_path / REFERENCE_FILE).write_bytes(b"not a reference")
    with pytest.raises(CMBDetectorError, match=REFERENCE_FILE):
        FeatureReference.load(tmp_path / REFERENCE_FILE)


def test_average_of_statistics():
    a = LayerStatistics([np.array([0.0, 2.0])], [np.array([1.0, 1.0])])
    b = LayerStatistics([np.array([2.0, 4.0])], [np.array([3.0, 1.0])])
    avg = LayerStatistics.average([a, b])
    assert np.allclose(avg.means[0], [1, 3]) and np.allclose(avg.variances[0], [2, 1])
