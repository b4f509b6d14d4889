"""Typed results that flow out of the pipeline: one :class:`Detection` per microbleed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .geometry import Geometry

LOCATIONS = ("lobar", "deep", "infratentorial", "unknown")
MAX_CMB_MM = 10.0  # MARS/BOMBS: microbleeds are 2-10 mm; a wider dark spot is a haemorrhage or vessel
SIZE_CLASSES = ("<5 mm", "5-10 mm", ">10 mm")


def size_class(diameter_mm: float) -> str:
    """MARS/BOMBS size class of an apparent diameter (">10 mm" is not a microbleed)."""
    if diameter_mm < 5.0:
        return SIZE_CLASSES[0]
    return SIZE_CLASSES[1] if diameter_mm <= MAX_CMB_MM else SIZE_CLASSES[2]


@dataclass(frozen=True)
class Detection:
    """One detected microbleed, in the input volume's own voxel and RAS space."""

    ras: tuple[float, float, float]
    ijk: tuple[float, float, float]
    diameter_mm: float
    candidate_score: float
    cnn_score: float
    yolo_score: float | None
    score: float
    location: str = "unknown"
    paramagnetic_score: float | None = None  # phase evidence in [-1, 1]; None without phase
    region: str = "unknown"  # MARS region (frontal, thalamus, cerebellum...), see atlas.REGIONS
    side: str = "unknown"  # left / right / midline

    @property
    def size_class(self) -> str:
        return size_class(self.diameter_mm)

    @property
    def is_microbleed(self) -> bool:
        """False for a dark spot wider than :data:`MAX_CMB_MM`: listed, flagged, never counted."""
        return self.diameter_mm <= MAX_CMB_MM

    def as_row(self) -> dict:
        row = asdict(self)
        r, a, s = row.pop("ras")
        i, j, k = row.pop("ijk")
        return {"R": r, "A": a, "S": s, "I": i, "J": j, "K": k, **row}


@dataclass
class DetectionResult:
    """Everything one run produced: detections sorted by decreasing score, plus provenance."""

    detections: list[Detection]
    geometry: Geometry
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    n_candidates: int = 0
    device: str = "cpu"
    threshold: float = 0.0  # final score the detections had to reach
    scan_threshold: float = 1.0  # final score that makes the scan-level call positive
    used_phase: bool = False

    @property
    def count(self) -> int:
        return len(self.detections)

    @property
    def has_microbleeds(self) -> bool:
        """Scan-level call: the best detection reaches ``scan_threshold``."""
        return any(d.score >= self.scan_threshold for d in self.detections)
