"""Physics rule on top of the phase fusion: haemosiderin is paramagnetic.

The phase fusion (:mod:`.fusion`) is linear in the CNN logit, so a near-certain CNN outvotes a
clearly diamagnetic dipole and calcifications keep high scores. Two rules bound it:

- a confidently diamagnetic candidate (paramagnetic score below ``diamagnetic_cutoff``) ends
  at most at ``DIAMAGNETIC_CAP``, below the lowest sensitivity preset, whatever the models say;
- unless ``phase_may_raise``, the phase never lifts a candidate above its magnitude-only score
  (veins are paramagnetic too, so phase evidence raising scores promotes veins).

The constants are chosen on the validation seeds (``scripts/benchmark.py --validation``
prints the sweep), never on the test seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIAMAGNETIC_CAP = 0.1  # below the lowest preset threshold (0.2)


@dataclass(frozen=True)
class PhaseRule:
    """How the phase evidence may move the final score (see the module docstring)."""

    diamagnetic_cutoff: float = -0.3
    phase_may_raise: bool = True

    def apply(self, with_phase: np.ndarray, magnitude_only: np.ndarray, paramagnetic: np.ndarray) -> np.ndarray:
        """Final scores from the phase fusion's and the magnitude fusion's scores of the same
        candidates and their paramagnetic scores (NaN: no phase evidence, no cap)."""
        out = np.asarray(with_phase, dtype=np.float32).copy()
        if not self.phase_may_raise:
            out = np.minimum(out, np.asarray(magnitude_only, dtype=np.float32))
        diamagnetic = np.nan_to_num(np.asarray(paramagnetic, dtype=np.float64), nan=0.0) < self.diamagnetic_cutoff
        out[diamagnetic] = np.minimum(out[diamagnetic], DIAMAGNETIC_CAP)
        return out


# Chosen on the validation seeds (50 000+, scripts/benchmark.py --validation prints the sweep):
# microbleeds' paramagnetic scores stay above -0.15 there, and every cut-off from -0.2 to -0.6
# gave the same FROC; stopping the phase from raising scores lost sensitivity (docs/MODEL_HISTORY.md).
PHASE_RULE = PhaseRule()
