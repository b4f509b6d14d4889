"""Whether a scan was acquired the way the shipped models' training scans were.

The models learned from synthetic 1.5 T and 3 T scans: 3D SWI with 1-2 mm slices and 2D GRE
with 4-5 mm slices, echo times 15-40 ms. Outside those ranges microbleeds bloom and stand out
differently and the detector finds markedly fewer of them (README, "Generalisation"), so such a
scan gets a warning with its results. The slice thickness comes from the voxel grid; the field
strength and echo time only when the scan's metadata gives them (DICOM header, or the JSON
sidecars that BIDS and dcm2niix write beside a NIfTI file: :mod:`.sidecars`). The balanced
preset has its own threshold on such scans (:data:`.config.OUT_OF_RANGE_BALANCED`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Geometry

TRAINED_FIELDS_T = (1.5, 3.0)
FIELD_TOLERANCE_T = 0.15  # scanners report their nominal field as e.g. 1.494 T or 2.89 T
TRAINED_TE_MS = (15.0, 40.0)
TRAINED_SLICES_MM = {"3D SWI": (1.0, 2.0), "2D GRE": (4.0, 5.0)}
SLICE_TOLERANCE_MM = 0.05


@dataclass(frozen=True)
class Acquisition:
    """What the scan's metadata says about its acquisition (None: not known)."""

    field_strength_t: float | None = None
    echo_time_ms: float | None = None

    def filled_from(self, other: Acquisition) -> Acquisition:
        """These values, with ``other``'s where these are not known."""
        return Acquisition(other.field_strength_t if self.field_strength_t is None else self.field_strength_t,
                           other.echo_time_ms if self.echo_time_ms is None else self.echo_time_ms)


def positive_number(value) -> float | None:
    """``value`` as a positive finite number (text, number), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def echo_time_ms(times_ms, echo: int | None) -> float | None:
    """The echo time of echo ``echo`` (0-based) of ``times_ms``, or their mean when the echoes
    are combined (``echo`` None); None when unknown."""
    times = [positive_number(t) for t in times_ms]
    if echo is not None:
        return times[echo] if 0 <= echo < len(times) else None
    known = [t for t in times if t is not None]
    return float(np.mean(known)) if known and len(known) == len(times) else None


def outside_training(geometry: Geometry, acquisition: Acquisition | None = None) -> list[str]:
    """What about the scan lies outside the training ranges, one phrase each (empty: nothing)."""
    acquisition = acquisition or Acquisition()
    found = []
    slice_mm = geometry.slice_thickness
    thin, thick = TRAINED_SLICES_MM["3D SWI"], TRAINED_SLICES_MM["2D GRE"]
    if thin[1] + SLICE_TOLERANCE_MM < slice_mm < thick[0] - SLICE_TOLERANCE_MM:
        found.append(f"slices {slice_mm:.1f} mm thick, between the {thin[0]:g}-{thin[1]:g} mm 3D and "
                     f"{thick[0]:g}-{thick[1]:g} mm 2D acquisitions trained on")
    elif slice_mm > thick[1] + SLICE_TOLERANCE_MM:
        found.append(f"slices {slice_mm:.1f} mm thick, thicker than any trained on ({thick[1]:g} mm)")
    b0 = acquisition.field_strength_t
    if b0 is not None and min(abs(b0 - f) for f in TRAINED_FIELDS_T) > FIELD_TOLERANCE_T:
        found.append(f"field strength {b0:g} T (trained on {' and '.join(f'{f:g}' for f in TRAINED_FIELDS_T)} T)")
    te = acquisition.echo_time_ms
    if te is not None and not TRAINED_TE_MS[0] <= te <= TRAINED_TE_MS[1]:
        found.append(f"echo time {te:.3g} ms (trained on {TRAINED_TE_MS[0]:g}-{TRAINED_TE_MS[1]:g} ms)")
    return found


def range_warning(geometry: Geometry, acquisition: Acquisition | None = None) -> str | None:
    """One warning naming everything outside the training ranges, or None."""
    found = outside_training(geometry, acquisition)
    if not found:
        return None
    return ("The scan lies outside the acquisitions the models were trained on (" + "; ".join(found) + "): "
            "microbleeds bloom and stand out differently there and the detector finds markedly fewer of "
            "them. The balanced preset reports lower-scoring points on such scans than on others; review the "
            "scan yourself: the high sensitivity preset finds more at the cost of more false positives.")
