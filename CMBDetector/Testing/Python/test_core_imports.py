"""The core package must stay Slicer-independent: importing every module loads no Slicer/Qt/VTK."""

import json
import subprocess
import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2]
FORBIDDEN = ("slicer", "qt", "ctk", "vtk", "vtkmodules", "PythonQt", "PySide6", "PyQt5")

PROBE = """
import importlib, json, pkgutil, sys
import CMBDetectorLib
names = [m.name for m in pkgutil.walk_packages(CMBDetectorLib.__path__, "CMBDetectorLib.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


def test_core_imports_no_slicer_qt_vtk():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=MODULE_DIR, capture_output=True, text=True,
                         env={"PYTHONPATH": str(MODULE_DIR), "YOLO_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "CMBDetectorLib.pipeline" in report["imported"]
    leaked = [m for m in report["modules"] if m.split(".")[0] in FORBIDDEN]
    assert leaked == []


def test_core_sources_do_not_mention_slicer_imports():
    for path in (MODULE_DIR / "CMBDetectorLib").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                top = stripped.split()[1].split(".")[0]
                assert top not in FORBIDDEN, f"{path}: {stripped}"
