"""A run's warnings (NaN voxels zeroed, negatives clipped, thick slices, echoes combined...) kept
on the markups node so that they survive saving: the ``CMBDetector.Warnings`` attribute (kept
by .mrb scenes) and a static measurement ``CMBDetector warnings`` (kept by .mrk.json files)."""

from __future__ import annotations

import json

import slicer

from .markups import ATTRIBUTE_PREFIX

MEASUREMENT_NAME = "CMBDetector warnings"


def store(node, warnings: list[str]) -> None:
    """Set the node's warnings (replacing earlier ones); no measurement when there are none."""
    node.SetAttribute(ATTRIBUTE_PREFIX + "Warnings", json.dumps(list(warnings)))
    for n in reversed(range(node.GetNumberOfMeasurements())):
        if node.GetNthMeasurement(n).GetName() == MEASUREMENT_NAME:
            node.RemoveNthMeasurement(n)
    if warnings:
        measurement = slicer.vtkMRMLStaticMeasurement()
        measurement.SetName(MEASUREMENT_NAME)
        measurement.SetDescription(json.dumps(list(warnings)))
        measurement.SetEnabled(True)
        node.AddMeasurement(measurement)


def load(node) -> list[str]:
    """The warnings stored on ``node`` (from the measurement of a loaded .mrk.json, else the attribute)."""
    measurement = node.GetMeasurement(MEASUREMENT_NAME)
    text = measurement.GetDescription() if measurement is not None else node.GetAttribute(ATTRIBUTE_PREFIX + "Warnings")
    try:
        warnings = json.loads(text) if text else []
    except json.JSONDecodeError:
        return []
    return [str(w) for w in warnings] if isinstance(warnings, list) else []
