"""Input validation and fault handling: one test per kind of bad (or odd but usable) input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.validation import (
    CUDA_ABSENT_WARNING,
    GPU_OOM_WARNING,
    PreparedInput,
    is_phase_like,
    load_checkpoint,
    prepare_input,
    run_with_gpu_fallback,
    select_device,
)

SHAPE = (24, 40, 40)  # k, j, i
ISO = Geometry.from_parts(spacing=(1.0, 1.0, 1.0))


def magnitude(shape=SHAPE, seed=0, dtype=np.float32) -> np.ndarray:
    """Positive noisy 'magnitude' volume with many distinct values."""
    rng = np.random.default_rng(seed)
    return rng.uniform(50, 500, size=shape).astype(dtype)


def refused(match: str, *args, **kwargs) -> None:
    with pytest.raises(CMBDetectorError, match=match):
        prepare_input(*args, **kwargs)


def rotation(seed: int, left_handed: bool) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    if (np.linalg.det(q) < 0) != left_handed:
        q[:, 0] *= -1
    return q


# --- usable input ---------------------------------------------------------------------------

def test_clean_volume_passes_unchanged():
    array = magnitude()
    prepared = prepare_input(array, ISO)
    assert isinstance(prepared, PreparedInput)
    assert prepared.array.dtype == np.float32 and prepared.array.shape == SHAPE
    np.testing.assert_array_equal(prepared.array, array)
    assert not np.shares_memory(prepared.array, array)
    assert prepared.geometry is ISO and prepared.mask is None and prepared.warnings == []


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float64, np.uint16, np.int32])
def test_integer_and_float_dtypes_become_float32(dtype):
    rng = np.random.default_rng(1)
    array = rng.integers(1, 250, size=SHAPE).astype(dtype)
    prepared = prepare_input(array, ISO)
    assert prepared.array.dtype == np.float32
    np.testing.assert_array_equal(prepared.array, array.astype(np.float32))
    assert prepared.warnings == []


@pytest.mark.parametrize("left_handed", [False, True])
def test_oblique_and_left_handed_geometry_accepted_unchanged(left_handed):
    geometry = Geometry.from_parts(spacing=(0.9, 0.8, 1.5), origin=(-90, 120, -40),
                                   direction=rotation(3, left_handed))
    before = geometry.ijk_to_ras.copy()
    prepared = prepare_input(magnitude(), geometry)
    assert prepared.geometry is geometry
    np.testing.assert_array_equal(prepared.geometry.ijk_to_ras, before)
    assert prepared.warnings == []


def test_lps_flipped_direction_accepted():
    geometry = Geometry.from_parts(spacing=(1, 1, 1), direction=np.diag([-1.0, -1.0, 1.0]))
    assert prepare_input(magnitude(), geometry).geometry is geometry


def test_input_array_never_modified():
    array = magnitude(dtype=np.float64)
    array[0, 0, :5] = np.nan
    array[1, 1, :3] = np.inf
    array[2, 2, :20] = -7.0
    before = array.copy()
    prepared = prepare_input(array, ISO)
    np.testing.assert_array_equal(array, before)  # NaN == NaN here
    assert len(prepared.warnings) == 2
    for dtype in (np.float32, np.int16):  # same-dtype input must be copied too
        source = magnitude(dtype=dtype)
        source[3, 3, :10] = -5
        kept = source.copy()
        prepare_input(source, ISO)
        np.testing.assert_array_equal(source, kept)


# --- dimensionality, echoes, colour ---------------------------------------------------------

@pytest.mark.parametrize("shape", [(64, 64), (1, 64, 64), (64,)])
def test_2d_image_refused(shape):
    refused("needs a 3D volume", magnitude(shape), ISO)


def test_5d_refused():
    refused("5 dimensions", magnitude((20, 20, 20, 2, 2)), ISO)


def test_4d_with_echo_picks_that_echo():
    echoes = magnitude(SHAPE + (4,))
    prepared = prepare_input(echoes, ISO, echo=2)
    np.testing.assert_array_equal(prepared.array, echoes[..., 2])
    assert prepared.warnings == []


def test_4d_without_echo_combines_by_root_sum_of_squares():
    echoes = magnitude(SHAPE + (3,)).astype(np.int16)
    prepared = prepare_input(echoes, ISO)
    expected = np.sqrt((echoes.astype(np.float64) ** 2).sum(axis=-1))
    np.testing.assert_allclose(prepared.array, expected, rtol=1e-5)
    assert len(prepared.warnings) == 1 and "root-sum-of-squares" in prepared.warnings[0]


def test_4d_single_echo_squeezed_without_warning():
    prepared = prepare_input(magnitude(SHAPE + (1,)), ISO)
    assert prepared.array.shape == SHAPE and prepared.warnings == []


@pytest.mark.parametrize("echo", [4, -1])
def test_echo_out_of_range_refused(echo):
    refused("Echo", magnitude(SHAPE + (4,)), ISO, echo=echo)


def test_echo_on_3d_volume_refused():
    refused("1 echo", magnitude(), ISO, echo=1)


def test_4d_time_series_refused():
    refused("multi-echo", magnitude((20, 20, 20, 40)), ISO)


@pytest.mark.parametrize("components", [3, 4])
def test_rgb_uint8_refused(components):
    rgb = np.random.default_rng(0).integers(0, 256, size=SHAPE + (components,), dtype=np.uint8)
    refused("convert it to a scalar volume", rgb, ISO)


def test_vector_flag_refused():
    refused("RGB/vector", magnitude(SHAPE + (3,)), ISO, rgb=True)


def test_complex_refused():
    refused("real-valued", magnitude().astype(np.complex64), ISO)


# --- content ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_label_map_refused(dtype):
    labels = np.random.default_rng(0).integers(0, 6, size=SHAPE).astype(dtype)
    refused("looks like a label map", labels, ISO)


def test_label_map_with_nan_or_echo_axis_refused():
    labels = np.random.default_rng(0).integers(0, 5, size=SHAPE + (2,)).astype(np.float32)
    labels[0, 0, 0] = np.nan
    refused("5 distinct integer values", labels, ISO)  # judged before echoes are combined


def test_sparse_label_map_refused():
    """Mostly background with a few one-voxel labels that a strided sample misses."""
    labels = np.zeros((128, 128, 128), np.uint8)
    labels[1::38, 1::42, 1::44] = np.arange(1, 4)  # odd indices: off the stride-2 sample
    refused("4 distinct integer values", labels, ISO)


def test_boolean_volume_refused():
    refused("label map", magnitude() > 200, ISO)


def test_few_non_integer_levels_accepted():
    """A float phantom with a few non-integer levels is an image, not a label map."""
    levels = np.array([0.0, 0.25, 0.8, 1.0])[np.random.default_rng(0).integers(0, 4, size=SHAPE)]
    assert prepare_input(levels, ISO).warnings == []


def test_empty_volume_refused():
    refused("empty", np.zeros((0, 40, 40), np.float32), ISO)


@pytest.mark.parametrize("value", [0.0, 123.0])
def test_constant_volume_refused(value):
    refused("same value", np.full(SHAPE, value, np.float32), ISO)


def test_constant_with_nan_refused_as_constant():
    array = np.full(SHAPE, 7.0, np.float32)
    array[0] = np.nan
    refused("same value", array, ISO)


def test_nan_and_inf_replaced_with_warning():
    array = magnitude()
    array[0, 0, :10] = np.nan
    array[5, 5, :3] = np.inf
    array[6, 6, :2] = -np.inf
    prepared = prepare_input(array, ISO)
    assert np.isfinite(prepared.array).all()
    assert (prepared.array[0, 0, :10] == 0).all() and (prepared.array[5, 5, :3] == 0).all()
    assert prepared.warnings == ["15 voxels were NaN or infinite and were set to 0."]


def test_mostly_nan_refused():
    array = magnitude()
    array.reshape(-1)[: array.size * 6 // 10] = np.nan
    refused("NaN or infinite", array, ISO)


def test_float64_overflow_counted_as_non_finite():
    array = magnitude(dtype=np.float64)
    array[0, 0, 0] = 1e300
    assert "1 voxels were NaN" in prepare_input(array, ISO).warnings[0]


def test_phase_in_radians_refused():
    phase = np.random.default_rng(0).uniform(-np.pi, np.pi, size=SHAPE)
    assert is_phase_like(phase)
    refused("phase image", phase, ISO)


def test_phase_in_scanner_units_with_zero_background_refused():
    phase = np.random.default_rng(0).integers(-4096, 4096, size=SHAPE).astype(np.int16)
    phase[:, :10] = 0
    assert is_phase_like(phase)
    refused("phase image", phase, ISO)


def test_magnitude_is_not_phase_like():
    assert not is_phase_like(magnitude())
    assert not is_phase_like(np.zeros(SHAPE))
    assert not is_phase_like(magnitude() - 100)  # mostly positive


def test_few_negative_voxels_clipped_with_warning():
    array = magnitude()
    array[0, :5] = -3.0  # 200 voxels
    prepared = prepare_input(array, ISO)
    assert prepared.array.min() == 0 and (prepared.array[0, :5] == 0).all()
    assert len(prepared.warnings) == 1 and prepared.warnings[0].startswith("200 voxels")


def test_many_negative_voxels_refused():
    array = (magnitude() - 300) * np.linspace(1, 30, SHAPE[2])  # ~55% negative, beyond ±4096
    assert not is_phase_like(array)
    refused("non-negative", array, ISO)


# --- size and spacing -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(10, 64, 64), (64, 8, 64), (64, 64, 15)])
def test_too_few_voxels_refused(shape):
    refused("too small for a patch", magnitude(shape), ISO)


def test_partial_thick_slice_slab_accepted():
    """A partial-brain 2D GRE slab of 15 slices of 5 mm (75 mm) is a real clinical scan."""
    slab = Geometry.from_parts(spacing=(0.9, 0.9, 5.0))
    prepared = prepare_input(magnitude((15, 64, 64)), slab)
    assert prepared.array.shape == (15, 64, 64)
    assert any("5.00 mm" in w for w in prepared.warnings)  # thick slices still warned about


def test_three_thick_slices_refused():
    """18 mm of cover, but three slices are not a stack to find dots in."""
    refused("at least 4 voxels", magnitude((3, 64, 64)), Geometry.from_parts(spacing=(0.9, 0.9, 6.0)))


def test_too_small_field_of_view_refused():
    fine = Geometry.from_parts(spacing=(0.4, 0.4, 0.4))  # 32 voxels = 12.8 mm
    refused("too small for a patch", magnitude((32, 32, 32)), fine)


@pytest.mark.parametrize("shape", [(1001, 1000, 64), (1001, 1000, 64, 3)])
def test_huge_volume_refused_before_any_copy(shape):
    lazy = np.broadcast_to(np.float32(1.0), shape)  # 256 MB if it were ever copied
    tracemalloc.start()
    try:
        with pytest.raises(CMBDetectorError, match="64,064,000 voxels.*crop"):
            prepare_input(lazy, ISO)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_max_voxels_is_configurable():
    refused("crop", magnitude(), ISO, max_voxels=1000)


def test_field_of_view_larger_than_a_head_refused():
    coarse = Geometry.from_parts(spacing=(8.0, 8.0, 8.0))  # 64 voxels = 512 mm: spacing is wrong
    refused("larger than a head", magnitude((64, 64, 64)), coarse)


def test_oblique_field_of_view_measured_in_ras():
    """A 300 mm edge tilted 45 degrees spans 300 * cos 45 + 150 * sin 45 mm in RAS."""
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    tilted = Geometry.from_parts(spacing=(5.0, 5.0, 5.0), direction=[[c, -s, 0], [s, c, 0], [0, 0, 1]])
    assert prepare_input(magnitude((20, 30, 60)), tilted).warnings == []  # 212 + 106 = 318 mm
    refused("larger than a head", magnitude((20, 40, 80)), tilted)  # 283 + 141 = 424 mm


def test_moderate_anisotropy_warns():
    thick = Geometry.from_parts(spacing=(0.5, 0.5, 6.0))
    prepared = prepare_input(magnitude((20, 64, 64)), thick)
    assert len(prepared.warnings) == 1 and "12.0 times" in prepared.warnings[0]


def test_extreme_anisotropy_refused():
    thick = Geometry.from_parts(spacing=(0.5, 0.5, 10.0))
    refused("thinner-slice", magnitude((20, 64, 64)), thick)


@pytest.mark.parametrize("spacing", [(np.nan, 1, 1), (0, 1, 1), (1, np.inf, 1)])
def test_non_finite_or_degenerate_geometry_refused(spacing):
    with pytest.raises(CMBDetectorError), np.errstate(invalid="ignore"):
        Geometry.from_parts(spacing=spacing)


# --- mask -------------------------------------------------------------------------------------

def test_mask_converted_to_bool():
    mask = np.zeros(SHAPE, np.uint8)
    mask[5:10, 5:20, 5:20] = 3
    prepared = prepare_input(magnitude(), ISO, mask=mask)
    assert prepared.mask.dtype == bool and prepared.mask.sum() == 5 * 15 * 15
    assert mask.max() == 3  # caller's mask untouched


def test_mask_shape_mismatch_refused():
    refused("resample the mask", magnitude(), ISO, mask=np.ones((24, 40, 39)))


def test_empty_mask_refused():
    refused("mask is empty", magnitude(), ISO, mask=np.zeros(SHAPE))


# --- device -----------------------------------------------------------------------------------

@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_select_device_without_cuda(no_cuda):
    assert select_device("auto") == ("cpu", [])
    assert select_device("cpu") == ("cpu", [])
    assert select_device("cuda") == ("cpu", [CUDA_ABSENT_WARNING])
    assert select_device(" GPU ") == ("cpu", [CUDA_ABSENT_WARNING])


def test_select_device_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == ("cuda", [])
    assert select_device("gpu") == ("cuda", [])
    assert select_device("cpu") == ("cpu", [])


def test_select_device_unknown_refused():
    with pytest.raises(CMBDetectorError, match="Unknown device 'tpu'"):
        select_device("tpu")


def failing_on_cuda(error: Exception):
    calls = []

    def fn(device):
        calls.append(device)
        if device == "cuda":
            raise error
        return f"ran on {device}"

    return fn, calls


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
                                   RuntimeError("CUDA error: out of memory")])
def test_gpu_out_of_memory_falls_back_to_cpu(error):
    fn, calls = failing_on_cuda(error)
    warnings = []
    assert run_with_gpu_fallback(fn, "cuda", warnings) == "ran on cpu"
    assert calls == ["cuda", "cpu"] and warnings == [GPU_OOM_WARNING]


def test_other_gpu_errors_propagate():
    fn, calls = failing_on_cuda(RuntimeError("device-side assert triggered"))
    with pytest.raises(RuntimeError, match="device-side"):
        run_with_gpu_fallback(fn, "cuda", [])
    assert calls == ["cuda"]


def test_cpu_run_has_no_fallback():
    def fn(device):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        run_with_gpu_fallback(fn, "cpu", [])


# --- checkpoints ------------------------------------------------------------------------------

def test_valid_checkpoint_loads(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.ones(3)}, "version": 1}, path)
    checkpoint = load_checkpoint(path, required_keys=("state_dict",))
    assert torch.equal(checkpoint["state_dict"]["w"], torch.ones(3))


def test_missing_checkpoint_refused(tmp_path):
    with pytest.raises(CMBDetectorError, match="Model weights not found at .*absent.pt.*retrain"):
        load_checkpoint(tmp_path / "absent.pt")


def test_truncated_checkpoint_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.randn(1000)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CMBDetectorError, match="model.pt' is corrupt or truncated"):
        load_checkpoint(path)


def test_garbage_checkpoint_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CMBDetectorError, match="corrupt"):
        load_checkpoint(path)


def test_checkpoint_missing_keys_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(CMBDetectorError, match="lacks state_dict"):
        load_checkpoint(path, required_keys=("state_dict",))
    torch.save(torch.ones(2), path)
    with pytest.raises(CMBDetectorError, match="does not hold a dictionary"):
        load_checkpoint(path)
