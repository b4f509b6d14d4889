"""Whether two visits were acquired alike enough to count new microbleeds between them.

How many microbleeds a scan shows depends on its field strength, echo time and slice thickness
(thick-slice 1.5 T GRE shows about a third of what thin-slice 3 T SWI shows), so ARIA-H
monitoring compares scans of the same protocol. A pair that differs gets a warning naming the
differences: its new or resolved microbleeds may come from the protocol, not the patient.
"""

from __future__ import annotations

from ..geometry import Geometry
from ..trained_range import FIELD_TOLERANCE_T, Acquisition

SLICE_RATIO = 1.5  # e.g. 1.5 against 2.5 mm slices: small microbleeds appear or vanish
ECHO_TIME_RATIO = 1.25  # blooming and contrast grow with TE


def protocol_differences(baseline: tuple[Geometry, Acquisition], followup: tuple[Geometry, Acquisition]) -> list[str]:
    """What differs between the visits' acquisitions, one phrase each (empty: alike, or unknown)."""
    (base_grid, base), (follow_grid, follow) = baseline, followup
    found = []
    slices = base_grid.slice_thickness, follow_grid.slice_thickness
    if max(slices) / min(slices) >= SLICE_RATIO:
        found.append(f"slices {slices[0]:.1f} mm at baseline, {slices[1]:.1f} mm at follow-up")
    fields = base.field_strength_t, follow.field_strength_t
    if None not in fields and abs(fields[0] - fields[1]) > FIELD_TOLERANCE_T:
        found.append(f"{fields[0]:g} T at baseline, {fields[1]:g} T at follow-up")
    times = base.echo_time_ms, follow.echo_time_ms
    if None not in times and max(times) / min(times) >= ECHO_TIME_RATIO:
        found.append(f"echo time {times[0]:.3g} ms at baseline, {times[1]:.3g} ms at follow-up")
    return found


def mismatch_warning(baseline: tuple[Geometry, Acquisition], followup: tuple[Geometry, Acquisition]) -> str | None:
    """One warning naming how the visits' acquisitions differ, or None."""
    found = protocol_differences(baseline, followup)
    if not found:
        return None
    return ("The visits were acquired differently (" + "; ".join(found) + "): microbleeds show more or less "
            "with field strength, echo time and slice thickness, so new or resolved microbleeds may come from "
            "the protocol rather than the patient. Compare scans of the same protocol for ARIA-H monitoring.")
