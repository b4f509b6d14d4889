"""MARS regions (Gregoire et al. 2009): label values of the shipped atlas, their class, and side.

Plain data, no imaging dependencies (the Slicer panel and the markups use it).
"""

from __future__ import annotations

from dataclasses import dataclass

# MARS label value -> (region, location class); the order of the source atlas.
REGIONS = {
    1: ("brainstem", "infratentorial"),
    2: ("cerebellum", "infratentorial"),
    3: ("basal_ganglia", "deep"),
    4: ("thalamus", "deep"),
    5: ("internal_capsule", "deep"),
    6: ("external_capsule", "deep"),
    7: ("corpus_callosum", "deep"),
    8: ("deep_white_matter", "deep"),
    9: ("frontal", "lobar"),
    10: ("parietal", "lobar"),
    11: ("temporal", "lobar"),
    12: ("occipital", "lobar"),
    13: ("insula", "lobar"),
}
REGION_LOCATION = {region: location for region, location in REGIONS.values()}
MIDLINE_MM = 2.0  # |x| below this in template space is "midline"


@dataclass(frozen=True)
class RegionLabel:
    """Where a point lies: MARS class (lobar / deep / infratentorial / unknown), region, side."""

    location: str = "unknown"
    region: str = "unknown"
    side: str = "unknown"


UNKNOWN = RegionLabel()


def location_of(region: str) -> str:
    """MARS class of a region name (``unknown`` for anything else)."""
    return REGION_LOCATION.get(region, "unknown")


def side_of(x_mm: float) -> str:
    """Left / right / midline from the template-space R coordinate."""
    if abs(x_mm) < MIDLINE_MM:
        return "midline"
    return "right" if x_mm > 0 else "left"
