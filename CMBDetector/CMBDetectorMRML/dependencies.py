"""First-use installation into Slicer's Python that cannot break it.

Plain Python (no slicer import), so the plan is testable outside Slicer: pip's real resolver
checks these exact command lines against each supported Slicer release's bundled packages
(``Testing/Python/test_dependencies.py``).

- Only what is missing is installed, found by import name (``cv2``, ``yaml``, ``ultralytics``).
- ultralytics goes in with ``--no-deps``; the few packages its inference path imports are
  named and pinned here (OpenCV as the headless build: no Qt libraries in Slicer's Qt process).
- Every command carries a constraints file that pins every distribution already installed to
  its current version, so pip can add packages but never upgrade, downgrade or replace one
  (numpy, SciPy, SimpleITK, Pillow, a CUDA torch...); a conflict stops pip before it changes
  anything. :func:`verify_install` compares the versions before and after.
- torch and torchvision are never pip-installed here: they come from the SlicerPyTorch
  extension's PyTorchUtils, which picks the CUDA build.

>>> plan = install_plan(use_yolo=True, installed={"numpy": "1.26.4", "torch": "2.5.1"}, has_module=lambda n: False)
>>> plan.no_deps, plan.with_deps
(('ultralytics==8.4.190',), ('opencv-python-headless==4.11.0.86', 'pyyaml==6.0.3'))
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from CMBDetectorLib.errors import CMBDetectorError

ULTRALYTICS = "ultralytics==8.4.190"  # AGPL-3.0; the version the shipped YOLO weights were trained with
PYYAML = "pyyaml==6.0.3"  # newest release with wheels for Python 3.9 (Slicer 5.8) and 3.12
# ultralytics imports cv2 when it loads. The last OpenCV builds for numpy 1.x stop at 4.11; later
# ones need numpy >= 2 (4.12 also < 2.3), so the pin follows the numpy Slicer bundles.
OPENCV_FOR_NUMPY_1 = "opencv-python-headless==4.11.0.86"
OPENCV_FOR_NUMPY_2 = "opencv-python-headless==5.0.0.93"

# ultralytics requirements that YOLO inference on in-memory crops never imports (checked by
# test_dependencies.py with these modules made unimportable): they are not installed.
NOT_NEEDED_AT_INFERENCE = {
    "matplotlib": "plots (training and validation only)",
    "polars": "results tables of training runs",
    "psutil": "system information for training and benchmarks",
    "nvidia-ml-py": "GPU memory queries for training batch sizes",
    "ultralytics-thop": "FLOPs count in model summaries",
    "ultralytics-platform": "Ultralytics HUB uploads",
    "opencv-python": "replaced by opencv-python-headless (same cv2 module, no Qt libraries)",
}
# Slicer ships these (or, for torch, the PyTorch extension does): never installed from here, even
# when missing, and an install that adds or replaces one is reported as a failure.
NEVER_INSTALL = ("numpy", "scipy", "simpleitk", "vtk", "pillow", "torch", "torchvision", "opencv-python")
PYTORCH_EXTENSION_HINT = ("Install the 'PyTorch' extension (View > Extensions Manager, search 'PyTorch'), "
                          "restart Slicer and press Apply again: it installs the PyTorch build that fits "
                          "your GPU.")


@dataclass(frozen=True)
class InstallPlan:
    """What the first Apply installs; empty when everything is present."""

    torch: bool  # torch (and torchvision) through PyTorchUtils
    torchvision: bool  # torchvision alone, matching the installed torch, through PyTorchUtils
    no_deps: tuple[str, ...]  # pip requirements installed with --no-deps
    with_deps: tuple[str, ...]  # pip requirements resolved against the constraints

    @property
    def empty(self) -> bool:
        return not (self.torch or self.torchvision or self.no_deps or self.with_deps)

    @property
    def pip_requirements(self) -> tuple[str, ...]:
        return self.no_deps + self.with_deps

    def describe(self) -> list[str]:
        """Human-readable list of what will be installed, for the confirmation prompt."""
        items = ["torch + torchvision (PyTorch extension)"] if self.torch else []
        items += ["torchvision (PyTorch extension, for the installed torch)"] if self.torchvision else []
        return items + list(self.pip_requirements)

    def pip_commands(self, constraints_path: str) -> list[list[str]]:
        """The pip install argument lists, in order (what ``slicer.util.pip_install`` receives)."""
        common = ["--only-binary=:all:", "-c", str(constraints_path)]
        commands = [["--no-deps", *common, *self.no_deps]] if self.no_deps else []
        return commands + ([[*common, *self.with_deps]] if self.with_deps else [])


def normalize(name: str) -> str:
    """PEP 503 project name: lower case, runs of -_. as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, str]:
    """Normalized name -> version of every distribution in this Python."""
    versions = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(normalize(name), dist.version)
    return versions


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def opencv_requirement(numpy_version: str) -> str:
    """The headless OpenCV pin built for this numpy major version."""
    return OPENCV_FOR_NUMPY_1 if int(numpy_version.split(".")[0]) < 2 else OPENCV_FOR_NUMPY_2


def install_plan(use_yolo: bool = True, installed: Mapping[str, str] | None = None,
                 has_module: Callable[[str], bool] = _has_module) -> InstallPlan:
    """What is missing for detection (torch) and YOLO rescoring (torchvision, ultralytics, cv2, yaml).

    ``installed`` (normalized name -> version) and ``has_module`` default to this Python.
    """
    installed = installed_distributions() if installed is None else installed
    if "numpy" not in installed:
        raise CMBDetectorError("numpy is missing from this Python: Slicer bundles it, so reinstall Slicer.")
    torch = not has_module("torch")
    torchvision = use_yolo and not torch and not has_module("torchvision")
    no_deps, with_deps = [], []
    if use_yolo:
        if not has_module("ultralytics"):
            no_deps.append(ULTRALYTICS)
        if not has_module("cv2"):
            with_deps.append(opencv_requirement(installed["numpy"]))
        if not has_module("yaml"):
            with_deps.append(PYYAML)
    return InstallPlan(torch=torch, torchvision=torchvision, no_deps=tuple(no_deps), with_deps=tuple(with_deps))


def _valid_version(version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def constraints_text(installed: Mapping[str, str]) -> str:
    """A pip constraints file pinning every installed distribution to its current version."""
    lines = [f"{name}=={version}" for name, version in sorted(installed.items()) if _valid_version(version)]
    return "# Everything already installed stays at its version (CMBDetector first-use install).\n" + \
        "\n".join(lines) + "\n"


def pinned_versions(requirements: tuple[str, ...]) -> dict[str, str]:
    """Normalized name -> version of ``name==version`` requirements."""
    return {normalize(name): version for name, version in (r.split("==") for r in requirements)}


def install_problems(plan: InstallPlan, before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What went wrong in an install, comparing the distributions before and after (empty: fine)."""
    problems = [f"{name} changed from {version} to {after[name]}" if name in after else f"{name} {version} was removed"
                for name, version in sorted(before.items()) if after.get(name) != version]
    problems += [f"{name} was installed, which this module never does"
                 for name in NEVER_INSTALL if name in after and name not in before]
    problems += [f"{name} {version} was requested but {after[name] if name in after else 'nothing'} is installed"
                 for name, version in pinned_versions(plan.pip_requirements).items() if after.get(name) != version]
    return problems


def verify_install(plan: InstallPlan, before: Mapping[str, str]) -> None:
    """Raise CMBDetectorError naming every package an install changed or failed to provide."""
    problems = install_problems(plan, before, installed_distributions())
    if problems:
        raise CMBDetectorError(
            "Installing the detector's packages did not go as planned: " + "; ".join(problems) +
            ". Restart Slicer; if modules fail to load, reinstall Slicer, then install the packages "
            "by hand in the Python console with slicer.util.pip_install.")
