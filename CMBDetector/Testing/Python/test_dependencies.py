"""First-use installation (CMBDetectorMRML/dependencies.py) against pip's real resolver.

``constraints/slicer-X.Y.txt`` lists what each supported Slicer release bundles in its Python
(read from Slicer's SuperBuild files by scripts/slicer_constraints.py). The exact pip command
lines the module runs in a fresh Slicer of that release go through
``pip install --dry-run --report`` for its Python version: they must resolve, install only the
planned pins, and leave every bundled package at its version. They run for Linux unless
CMBDETECTOR_RESOLVER_PLATFORMS=linux,windows,macos asks for more (the dependency command
downloads OpenCV and numpy wheels, ~60 MB a platform, when the registry serves no separate
metadata); ultralytics is one pure-Python wheel, so its requirements are checked for all three
platforms from the same metadata.
Needs the package registry (PyPI, or PIP_INDEX_URL); skipped when it cannot be reached.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from CMBDetectorMRML import dependencies as deps

ROOT = Path(__file__).resolve().parents[3]
CONSTRAINTS = Path(__file__).resolve().parent / "constraints"
RELEASES = sorted(p.stem.removeprefix("slicer-") for p in CONSTRAINTS.glob("slicer-*.txt"))
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
# pip --platform tags for each desktop platform Slicer ships, with their marker values.
PLATFORMS = {
    "linux": (["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"], "linux", "Linux", "x86_64"),
    "windows": (["win_amd64"], "win32", "Windows", "AMD64"),
    "macos": (["macosx_14_0_arm64"], "darwin", "Darwin", "arm64"),
}
RESOLVE_PLATFORMS = os.environ.get("CMBDETECTOR_RESOLVER_PLATFORMS", "linux").split(",")
# ultralytics requirements a bundled package does not meet, accepted with the reason: the module
# never replaces what Slicer bundles.
ACCEPTED_MISMATCHES = {
    ("5.10", "macos", "numpy"): "ultralytics 8.4.190 excludes numpy 2.0-2.3.4 on macOS; Slicer 5.10 bundles "
                                "numpy 2.0.2 (README: supported Slicer versions)",
}
# Import names of the ultralytics requirements left out (NOT_NEEDED_AT_INFERENCE, but opencv-python,
# whose cv2 the headless build provides).
SKIPPED_IMPORTS = {"matplotlib": "matplotlib", "polars": "polars", "psutil": "psutil", "nvidia-ml-py": "pynvml",
                   "ultralytics-thop": "thop", "ultralytics-platform": "ultralytics_platform"}


def bundled(release: str) -> tuple[str, dict[str, str]]:
    """(Python X.Y, normalized name -> version) of a Slicer release's constraints file."""
    text = (CONSTRAINTS / f"slicer-{release}.txt").read_text()
    python = re.search(r"\(Python (\d+\.\d+)", text).group(1)
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M))
    return python, {deps.normalize(name): version for name, version in pins.items()}


def fresh_slicer_plan(release: str) -> deps.InstallPlan:
    """The plan in a fresh Slicer of this release with the PyTorch extension's torch installed."""
    _python, pins = bundled(release)
    return deps.install_plan(use_yolo=True, installed={**pins, "torch": "2.5.1"},
                             has_module=lambda name: name in ("torch", "torchvision"))


def dry_run(release: str, platform: str, args: list[str], report: Path) -> dict:
    python, _pins = bundled(release)
    tags, *_markers = PLATFORMS[platform]
    command = [sys.executable, "-m", "pip", "--isolated", "install", "--index-url", INDEX, "--dry-run",
               "--quiet", "--report", str(report), "--target", str(report.with_suffix(".target")),
               "--ignore-installed", "--python-version", python, "--implementation", "cp",
               *[f"--platform={tag}" for tag in tags], *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"Slicer {release} on {platform}: pip {' '.join(args)}\n{run.stderr[-3000:]}"
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """(release, platform) -> one pip report per command line of the plan, run in parallel."""
    try:
        urllib.request.urlopen(f"{INDEX}/pip/", timeout=15).close()
    except OSError as exc:
        pytest.skip(f"package registry {INDEX} unreachable ({exc}): resolver tests need it")
    tmp = tmp_path_factory.mktemp("pip")
    jobs = {}
    with ThreadPoolExecutor(max_workers=6) as pool:
        for release in RELEASES:
            constraints = str(CONSTRAINTS / f"slicer-{release}.txt")
            for platform in RESOLVE_PLATFORMS:
                for n, args in enumerate(fresh_slicer_plan(release).pip_commands(constraints)):
                    jobs[release, platform, n] = pool.submit(
                        dry_run, release, platform, args, tmp / f"{release}-{platform}-{n}.json")
    out = {}
    for (release, platform, _n), job in jobs.items():
        out.setdefault((release, platform), []).append(job.result())
    return out


def installs(reports_: list[dict]) -> dict[str, str]:
    return {deps.normalize(item["metadata"]["name"]): item["metadata"]["version"]
            for report in reports_ for item in report["install"]}


def test_supported_releases_are_the_readme_ones():
    assert {"5.8", "5.10"} <= set(RELEASES)
    readme = (ROOT / "README.md").read_text()
    for release in RELEASES:
        assert f"Slicer {release}" in readme, release


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("platform", RESOLVE_PLATFORMS)
def test_install_commands_resolve_and_keep_bundled_versions(reports, release, platform):
    _python, pins = bundled(release)
    plan = fresh_slicer_plan(release)
    assert plan.no_deps == (deps.ULTRALYTICS,) and len(plan.with_deps) == 2 and not plan.torch
    installed = installs(reports[release, platform])
    changed = {name: (pins[name], version) for name, version in installed.items()
               if name in pins and pins[name] != version}
    assert changed == {}, f"bundled packages would change: {changed}"
    assert {name: v for name, v in installed.items() if name not in pins} == deps.pinned_versions(
        plan.pip_requirements)
    assert not set(deps.NEVER_INSTALL) & (installed.keys() - pins.keys())


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_every_ultralytics_requirement_is_installed_bundled_or_not_needed(reports, release, platform):
    """ultralytics is installed with --no-deps: its own requirements must each be accounted for."""
    python, pins = bundled(release)
    _tags, sys_platform, system, machine = PLATFORMS[platform]
    env = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": sys_platform,
           "platform_system": system, "platform_machine": machine, "os_name": "nt" if system == "Windows" else "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    ultralytics = next(item["metadata"] for report in reports[release, RESOLVE_PLATFORMS[0]]
                       for item in report["install"] if item["metadata"]["name"] == "ultralytics")
    planned = deps.pinned_versions(fresh_slicer_plan(release).pip_requirements)
    for line in ultralytics["requires_dist"]:
        req = Requirement(line)
        if req.marker is not None and not Marker(str(req.marker)).evaluate(env):
            continue
        name = deps.normalize(req.name)
        if name == "opencv-python":  # cv2 comes from the headless build: same versions, same module
            assert planned["opencv-python-headless"] in req.specifier, (line, planned)
        elif name in ("torch", "torchvision"):
            continue  # the PyTorch extension provides them
        elif name in deps.NOT_NEEDED_AT_INFERENCE:
            continue
        else:
            version = planned.get(name, pins.get(name))
            assert version is not None, f"ultralytics needs {line!r}: neither installed, bundled nor listed as not needed"
            if (release, platform, name) in ACCEPTED_MISMATCHES:  # must still be a mismatch, or drop it
                assert version not in req.specifier, ACCEPTED_MISMATCHES[release, platform, name]
            else:
                assert version in req.specifier, (line, version)


def test_plan_installs_only_what_is_missing():
    present = {"torch", "torchvision", "ultralytics", "cv2", "yaml"}
    numpy1 = {"numpy": "1.26.4"}
    assert deps.install_plan(True, numpy1, lambda name: name in present).empty
    assert deps.install_plan(True, numpy1, lambda name: False) == deps.InstallPlan(
        torch=True, torchvision=False, no_deps=(deps.ULTRALYTICS,),
        with_deps=(deps.OPENCV_FOR_NUMPY_1, deps.PYYAML))
    assert deps.install_plan(True, {"numpy": "2.0.2"}, lambda name: name != "cv2").with_deps == (
        deps.OPENCV_FOR_NUMPY_2,)
    no_vision = deps.install_plan(True, numpy1, lambda name: name != "torchvision")
    assert no_vision.torchvision and not no_vision.torch and no_vision.pip_requirements == ()
    assert deps.install_plan(False, numpy1, lambda name: False) == deps.InstallPlan(True, False, (), ())
    with pytest.raises(deps.CMBDetectorError, match="reinstall Slicer"):
        deps.install_plan(True, {}, lambda name: False)


def test_commands_carry_the_constraints_and_ultralytics_goes_without_dependencies():
    plan = deps.install_plan(True, {"numpy": "2.4.6"}, lambda name: name == "torch")
    first, second = plan.pip_commands("/tmp/c.txt")
    assert first == ["--no-deps", "--only-binary=:all:", "-c", "/tmp/c.txt", deps.ULTRALYTICS]
    assert second == ["--only-binary=:all:", "-c", "/tmp/c.txt", deps.OPENCV_FOR_NUMPY_2, deps.PYYAML]
    assert plan.describe()[0].startswith("torchvision")


def test_runtime_constraints_pin_everything_installed():
    _python, pins = bundled("5.8")
    text = deps.constraints_text({**pins, "torch": "2.5.1+cu121", "oddball": "not a version"})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert dict(line.split("==") for line in lines) == {**pins, "torch": "2.5.1+cu121"}


def test_install_problems_name_every_change():
    plan = deps.install_plan(True, {"numpy": "1.26.4"}, lambda name: name in ("torch", "torchvision"))
    before = {"numpy": "1.26.4", "scipy": "1.13.1", "torch": "2.5.1+cu121"}
    good = {**before, "ultralytics": "8.4.190", "opencv-python-headless": "4.11.0.86", "pyyaml": "6.0.3"}
    assert deps.install_problems(plan, before, good) == []
    bad = {**good, "numpy": "2.0.2", "opencv-python": "4.12.0.88", "pyyaml": "6.0.2"}
    del bad["scipy"]
    problems = deps.install_problems(plan, before, bad)
    assert problems == ["numpy changed from 1.26.4 to 2.0.2", "scipy 1.13.1 was removed",
                        "opencv-python was installed, which this module never does",
                        "pyyaml 6.0.3 was requested but 6.0.2 is installed"]


def test_yolo_inference_runs_without_the_skipped_packages():
    """The left-out ultralytics requirements are never imported when the rescorer scores a crop."""
    pytest.importorskip("ultralytics")
    assert set(SKIPPED_IMPORTS) == set(deps.NOT_NEEDED_AT_INFERENCE) - {"opencv-python"}
    script = f"""
import sys
for name in {sorted(SKIPPED_IMPORTS.values())!r}:
    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError
import numpy as np
from CMBDetectorLib.config import MODELS_DIR
from CMBDetectorLib.yolo_rescore import YoloRescorer
image = np.ones((40, 64, 64), np.float32)
k, j, i = np.mgrid[:40, :64, :64]
image[(k - 20) ** 2 + (j - 32) ** 2 + (i - 32) ** 2 <= 4] = 0.1  # a dark 2 mm sphere
print(float(YoloRescorer(MODELS_DIR).score(image, np.array([[20, 32, 32]]), np.array([3.0]))[0]))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "CMBDetector"), "YOLO_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert float(run.stdout.split()[-1]) > 0  # a box on the sphere: the box-reading path ran too


def test_docstring_example():
    import doctest

    assert doctest.testmod(deps).failed == 0


def test_constraints_script_reads_superbuild_pins(tmp_path):
    """scripts/slicer_constraints.py on a miniature Slicer tree: Python version, pip pins, SimpleITK fork."""
    files = {
        "CMakeLists.txt": 'if(NOT DEFINED X)\n  set(Slicer_REQUIRED_PYTHON_VERSION "3.9.10")\nendif()\n',
        "SuperBuild/External_python-numpy.cmake": "  # [numpy]\n  numpy==1.26.4 --hash=sha256:ab \\\n"
                                                  "                --hash=sha256:cd\n",
        "SuperBuild/External_python-dicom-requirements.cmake": "  pillow==10.3.0 --hash=sha256:ef\n",
        "SuperBuild/External_SimpleITK.cmake": '    "441c59aa"  # slicer-v2.3.1-2024-05-20-bc4449e\n',
        "SuperBuild/External_VTK.cmake": "set(x 9.3==1)\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"], ["tag", "v5.8.1"]):
        subprocess.run(git + args, check=True, capture_output=True)
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "slicer_constraints.py"), str(tmp_path), "v5.8.1"],
                         check=True, capture_output=True, text=True)
    assert "3D Slicer 5.8.1 (Python 3.9.10" in run.stdout
    assert re.findall(r"^(\S+)  # (\S+)", run.stdout, re.M) == [
        ("numpy==1.26.4", "SuperBuild/External_python-numpy.cmake"),
        ("pillow==10.3.0", "SuperBuild/External_python-dicom-requirements.cmake"),
        ("simpleitk==2.3.1", "SuperBuild/External_SimpleITK.cmake")]
