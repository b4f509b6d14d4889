"""Location benchmark: MARS labels of the registered true microbleeds against the atlas labels at
their template positions (the synthetic engine places every microbleed in template space)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..atlas import load_region_atlas
from ..geometry import Geometry
from ..registration import register_to_template

SLAB_MM = 30.0  # a partial-brain slab the registration must refuse


@dataclass
class LocationOutcome:
    """One scan: registration quality and, per true microbleed, (truth, predicted) labels."""

    protocol: str
    skull_stripped: bool
    ok: bool
    dice: float
    brain_fraction: float
    seconds: float
    cpu_seconds: float
    pairs: list  # (truth RegionLabel, predicted RegionLabel, engine class)
    slab_refused: bool


def evaluate_location(scan) -> LocationOutcome:
    """Register ``scan``, label its true microbleeds, and check that a slab of it is refused."""
    atlas = load_region_atlas()
    cpu = time.process_time()
    reg = register_to_template(scan.magnitude, scan.geometry, atlas=atlas)
    cpu = time.process_time() - cpu
    cmbs = scan.cmbs
    truth = atlas.region_at([o.template_ras for o in cmbs]) if cmbs else []
    predicted = atlas.region_at(reg.to_template([o.center_ras for o in cmbs])) if cmbs and reg.ok else []
    pairs = [(t, p, o.location) for t, p, o in zip(truth, predicted, cmbs)]
    return LocationOutcome("2D GRE" if scan.protocol.kind == "gre2d" else "3D SWI", scan.skull_stripped, reg.ok,
                           reg.dice, reg.brain_fraction, reg.seconds, cpu, pairs, not _slab(scan, atlas).ok)


def _slab(scan, atlas):
    """The middle ``SLAB_MM`` of the scan along its slice axis."""
    nk = scan.magnitude.shape[0]
    half = max(1, int(round(SLAB_MM / scan.geometry.spacing[2] / 2)))
    k0 = max(0, nk // 2 - half)
    matrix = scan.geometry.ijk_to_ras.copy()
    matrix[:3, 3] = scan.geometry.ijk_to_ras_points([0, 0, k0])[0]
    return register_to_template(scan.magnitude[k0:k0 + 2 * half], Geometry(matrix), atlas=atlas)


def summarise_location(outcomes: list[LocationOutcome]) -> dict:
    """Accuracies over all true microbleeds of registered scans, failure counts and timing."""
    pairs = [p for o in outcomes for p in o.pairs]
    n_cmb = sum(len(o.pairs) for o in outcomes)

    def acc(fn) -> float:
        return float(np.mean([fn(t, p) for t, p, _ in pairs])) if pairs else float("nan")

    seconds = np.array([o.seconds for o in outcomes if o.ok])
    cpu = np.array([o.cpu_seconds for o in outcomes if o.ok])
    return {
        "n_scans": len(outcomes), "n_registered": sum(o.ok for o in outcomes), "n_microbleeds": n_cmb,
        "class_accuracy": acc(lambda t, p: t.location == p.location),
        "region_accuracy": acc(lambda t, p: t.region == p.region),
        "side_accuracy": acc(lambda t, p: t.side == p.side),
        "engine_class_agreement": float(np.mean([p.location == e for _, p, e in pairs])) if pairs else float("nan"),
        "slabs_refused": sum(o.slab_refused for o in outcomes),
        "dice_min": min((o.dice for o in outcomes if o.ok), default=float("nan")),
        "brain_fraction_min": min((o.brain_fraction for o in outcomes), default=float("nan")),
        "seconds_median": float(np.median(seconds)) if len(seconds) else float("nan"),
        "seconds_max": float(seconds.max()) if len(seconds) else float("nan"),
        "cpu_seconds_median": float(np.median(cpu)) if len(cpu) else float("nan"),
    }


def location_text(summary: dict) -> str:
    """One benchmark paragraph from :func:`summarise_location`."""
    def pct(v) -> str:
        return "n/a" if v != v else f"{100 * v:.1f} %"
    return (f"Location (MARS regions of the {summary['n_microbleeds']} true microbleeds of the "
            f"{summary['n_registered']}/{summary['n_scans']} scans registered to MNI, against the atlas at their "
            f"true template positions): class (lobar / deep / infratentorial) {pct(summary['class_accuracy'])}, "
            f"region {pct(summary['region_accuracy'])}, side {pct(summary['side_accuracy'])}; registration "
            f"{summary['seconds_median']:.1f} s median wall time ({summary['cpu_seconds_median']:.1f} s CPU, "
            f"{summary.get('threads', 2)} threads); {summary['slabs_refused']}/{summary['n_scans']} 30 mm slabs "
            f"refused (regions unknown).")
