"""Learned fusion of the CNN and YOLO scores (and the phase evidence) into the final score.

A logistic regression over the two models' logits and a thick-slice indicator (the models'
scores mean different things on 4-5 mm 2D GRE than on thin 3D SWI), fitted on synthetic scans
neither model was trained on (:mod:`.training.train_fusion`). When a phase image is given a
second model adds the paramagnetic score of :mod:`.phase`. Without the YOLO stage two more
models, fitted on the same rows without its column, do the same from the CNN alone. The output
is the probability that a candidate is a microbleed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CMBDetectorError

FEATURES = ("cnn_logit", "yolo_logit", "thick_slices")
PHASE_FEATURES = FEATURES + ("paramagnetic",)
_EPS = 1e-3


def feature_names(with_phase: bool = False, with_yolo: bool = True) -> tuple[str, ...]:
    """The inputs of one of the four fusions (with or without the phase and the YOLO stage)."""
    names = PHASE_FEATURES if with_phase else FEATURES
    return names if with_yolo else tuple(n for n in names if n != "yolo_logit")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.nan_to_num(np.asarray(p, dtype=np.float64), nan=0.0), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def weights_file(with_phase: bool, with_yolo: bool = True) -> str:
    """``cmb_fusion[_noyolo][_phase].json``."""
    return f"cmb_fusion{'' if with_yolo else '_noyolo'}{'_phase' if with_phase else ''}.json"


FUSION_WEIGHTS, PHASE_FUSION_WEIGHTS = weights_file(False), weights_file(True)


def without_yolo(x: np.ndarray) -> np.ndarray:
    """Rows of :func:`fusion_inputs` with the YOLO column dropped."""
    return np.delete(np.asarray(x), FEATURES.index("yolo_logit"), axis=1)


def fusion_inputs(cnn: np.ndarray, yolo: np.ndarray | None, thick_slices: bool,
                  paramagnetic: np.ndarray | None = None) -> np.ndarray:
    """(N, len(FEATURES)) design matrix, plus the paramagnetic score column when given;
    a missing (NaN) YOLO score counts as 0; ``yolo`` None (the stage did not run) leaves its
    column out."""
    columns = [_logit(cnn)] + ([] if yolo is None else [_logit(yolo)]) + [np.full(len(cnn), float(thick_slices))]
    if paramagnetic is not None:
        columns.append(np.asarray(paramagnetic, dtype=np.float64))
    return np.column_stack(columns)


@dataclass
class ScoreFusion:
    """Standardised logistic regression: p = sigmoid(((x - mean) / scale) · weights + bias)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    features: tuple[str, ...] = FEATURES

    def score(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.weights + self.bias
        return (1 / (1 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50,
            features: tuple[str, ...] | None = None) -> ScoreFusion:
        """Maximum-likelihood fit with an L2 penalty (Newton's method, classes weighted equally);
        ``x`` has the columns of ``features`` (default: FEATURES or PHASE_FEATURES by its width)."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        features = features or {len(FEATURES): FEATURES, len(PHASE_FEATURES): PHASE_FEATURES}[x.shape[1]]
        if len(features) != x.shape[1]:
            raise ValueError(f"{x.shape[1]} columns for the features {features}")
        if y.min() == y.max():
            raise CMBDetectorError("Fitting the score fusion needs both microbleeds and mimics.")
        mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        z = np.column_stack([(x - mean) / scale, np.ones(len(x))])
        sample_w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
        penalty = np.full(z.shape[1], l2)
        penalty[-1] = 0.0
        beta = np.zeros(z.shape[1])
        for _ in range(iterations):
            p = 1 / (1 + np.exp(-np.clip(z @ beta, -30, 30)))
            grad = z.T @ (sample_w * (p - y)) + penalty * beta
            hess = (z * (sample_w * p * (1 - p))[:, None]).T @ z + np.diag(penalty)
            step = np.linalg.solve(hess, grad)
            beta -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(mean, scale, beta[:-1], float(beta[-1]), features)

    def save(self, path: Path, metadata: dict | None = None) -> None:
        data = {"features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "bias": self.bias, **(metadata or {})}
        Path(path).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, models_dir: Path, with_phase: bool = False, with_yolo: bool = True) -> ScoreFusion:
        """Read ``cmb_fusion.json`` (``cmb_fusion_phase.json`` with phase, ``cmb_fusion_noyolo*``
        without the YOLO stage); a missing, corrupt or mismatched file is a clear error."""
        from .validation import RETRAIN_HINT

        path = Path(models_dir) / weights_file(with_phase, with_yolo)
        features = feature_names(with_phase, with_yolo)
        if not path.is_file():
            raise CMBDetectorError(f"Score fusion weights not found: {path}. {RETRAIN_HINT}")
        try:
            data = json.loads(path.read_text())
            if tuple(data["features"]) != features:
                raise ValueError(f"features {data['features']} differ from {list(features)}")
            fusion = cls(np.asarray(data["mean"], float), np.asarray(data["scale"], float),
                         np.asarray(data["weights"], float), float(data["bias"]), features)
            if not (len(fusion.mean) == len(fusion.scale) == len(fusion.weights) == len(features)):
                raise ValueError("vector lengths differ from the feature list")
        except (ValueError, KeyError, TypeError) as exc:
            raise CMBDetectorError(f"Score fusion weights {path} are corrupt ({exc}). {RETRAIN_HINT}") from None
        return fusion
