"""Phase evidence is decisive where it is confident: the physics rule on top of the phase fusion."""

from types import SimpleNamespace

import numpy as np

from CMBDetectorLib.config import MODELS_DIR, PHASE_SENSITIVITY_PRESETS, SENSITIVITY_PRESETS
from CMBDetectorLib.phase_rule import DIAMAGNETIC_CAP, PHASE_RULE, PhaseRule
from CMBDetectorLib.pipeline import final_scores

LOWEST_PRESET = min(*SENSITIVITY_PRESETS.values(), *PHASE_SENSITIVITY_PRESETS.values())


def _scored(cnn, paramagnetic, yolo=0.5, modality="swi"):
    cnn = np.asarray(cnn, np.float32)
    return SimpleNamespace(cnn=cnn, yolo=np.full(len(cnn), yolo, np.float32),
                           paramagnetic=np.asarray(paramagnetic, np.float32), candidates=np.zeros(len(cnn)),
                           pre=SimpleNamespace(modality=modality))


def test_confident_cnn_cannot_keep_a_diamagnetic_dot_with_the_shipped_models():
    for modality in ("swi", "gre"):
        for yolo in (0.1, 0.9):
            scored = _scored([0.999, 0.999], [-0.8, 0.6], yolo, modality)
            final = final_scores(scored, MODELS_DIR)
            assert final[0] < LOWEST_PRESET  # calcification: confident CNN, strongly diamagnetic dipole
            unbounded = final_scores(scored, MODELS_DIR, rule=PhaseRule(-np.inf, True))
            assert final[1] == unbounded[1] > PHASE_SENSITIVITY_PRESETS["balanced"]  # microbleed untouched
            assert unbounded[0] > final[0]  # the rule, not the fusion, takes the calcification down


def test_magnitude_only_scores_ignore_the_rule():
    scored = _scored([0.999], [-0.8])
    assert final_scores(scored, MODELS_DIR, use_phase=False)[0] > 0.9


def test_rule_caps_diamagnetic_and_optionally_stops_phase_raising():
    with_phase = np.array([0.95, 0.9, 0.7, 0.6], np.float32)
    magnitude = np.array([0.99, 0.5, 0.8, 0.4], np.float32)
    para = np.array([-0.8, 0.7, np.nan, -0.1])
    free = PhaseRule(-0.3, phase_may_raise=True).apply(with_phase, magnitude, para)
    np.testing.assert_allclose(free, [DIAMAGNETIC_CAP, 0.9, 0.7, 0.6])  # NaN: no evidence, no cap
    lower_only = PhaseRule(-0.3, phase_may_raise=False).apply(with_phase, magnitude, para)
    np.testing.assert_allclose(lower_only, [DIAMAGNETIC_CAP, 0.5, 0.7, 0.4])
    assert DIAMAGNETIC_CAP < LOWEST_PRESET and PHASE_RULE.diamagnetic_cutoff < 0
