"""What a false positive lies on: the benchmark's mimic kinds from a synthetic scan's ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from CMBDetectorLib.evaluation.benchmark import ScanOutcome, false_positive_mimics
from CMBDetectorLib.evaluation.mimics import (ACROSS_B0, AIR, ALONG_B0, CALCIFICATION, IRON, MIMICS, NONE,
                                              mimic_kinds, segment_distances)
from CMBDetectorLib.synth import SyntheticObject
from CMBDetectorLib.synth.vessels import Vessel


def line(start, stop, radius=0.5, n=11) -> Vessel:
    return Vessel("test", np.linspace(start, stop, n), np.full(n, radius))


VEINS = [line((0, 0, -20), (0, 0, 20)),  # along S = B0: a dot on the axial slice
         line((40, 0, 0), (40, 30, 5))]  # across B0
OBJECTS = [SyntheticObject("calcification", (0.0, 0.0, 30.0), 4.0, 3.0),
           SyntheticObject("iron_nucleus", (-40.0, 0.0, 0.0), 6.0, 6.0),
           SyntheticObject("air_artifact", (0.0, -60.0, -30.0), 8.0, 5.0),
           SyntheticObject("cmb", (60.0, 60.0, 0.0), 3.0, 2.0, is_cmb=True)]


def test_point_to_segment_distances():
    seg = np.array([[[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]])
    points = np.array([[5.0, 3.0, 0.0], [-4.0, 0.0, 0.0], [13.0, 4.0, 0.0]])
    assert segment_distances(points, seg)[:, 0] == pytest.approx([3.0, 4.0, 5.0])


@pytest.mark.parametrize("point, expected", [
    ((1.5, 0.0, 5.0), ALONG_B0),  # radius 0.5 + 1.5 mm: within reach
    ((3.0, 0.0, 5.0), NONE),  # 2.5 mm beyond the wall
    ((40.0, 15.0, 2.0), ACROSS_B0),
    ((0.0, 0.0, 21.5), ALONG_B0),  # past the vein's end, within reach
    ((0.0, 0.0, 29.0), CALCIFICATION),  # calcification first, though near the vein's end too
    ((-40.0, 4.0, 0.0), IRON),  # radius 3 + 1 mm
    ((0.0, -60.0, -24.5), AIR),
    ((60.0, 60.0, 0.0), NONE),  # a microbleed is no mimic
])
def test_each_kind(point, expected):
    (kind,) = mimic_kinds(np.array([point]), OBJECTS, VEINS)
    assert kind == expected


def test_no_detections_or_no_veins():
    assert len(mimic_kinds(np.zeros((0, 3)), OBJECTS, VEINS)) == 0
    assert list(mimic_kinds(np.array([[1.5, 0.0, 5.0]]), OBJECTS, [])) == [NONE]


def test_false_positives_are_counted_by_kind_at_a_threshold():
    ras = np.array([[60.0, 60.0, 0.0], [1.0, 0.0, 0.0], [40.0, 15.0, 2.0], [100.0, 0.0, 0.0]])
    scores = np.array([0.9, 0.8, 0.3, 0.7])
    outcome = ScanOutcome(np.array([[60.0, 60.0, 0.0]]), np.array([3.0]), {"fused": (ras, scores)},
                          mimics={"fused": mimic_kinds(ras, OBJECTS, VEINS)})
    assert set(false_positive_mimics([outcome], "fused", 0.2)) == set(MIMICS)
    high = false_positive_mimics([outcome], "fused", 0.2)
    assert (high[ALONG_B0], high[ACROSS_B0], high[NONE], sum(high.values())) == (1, 1, 1, 3)  # the microbleed is no FP
    balanced = false_positive_mimics([outcome], "fused", 0.75)
    assert (balanced[ALONG_B0], sum(balanced.values())) == (1, 1)
