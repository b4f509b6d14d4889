"""Extension layout: CMake lists every shipped file; Slicer sees exactly one module file."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "CMBDetector"


def cmake_entries(path: Path) -> set[str]:
    text = re.sub(r"#.*", "", path.read_text()).replace("${MODULE_NAME}", "CMBDetector")
    return set(re.findall(r"[\w/.-]+\.(?:py|ui|png|pt|md|nii\.gz|csv|json)", text))


def test_top_level_layout():
    for rel in ("CMakeLists.txt", "CMBDetector.s4ext", "README.md", "LICENSE", ".ci/run",
                "CMBDetector/CMakeLists.txt", "CMBDetector/CMBDetector.py", "CMBDetector/Testing/CMakeLists.txt",
                "CMBDetector/Resources/Icons/CMBDetector.png", "CMBDetector/Resources/UI/CMBDetector.ui"):
        assert (ROOT / rel).is_file(), rel
    top = (ROOT / "CMakeLists.txt").read_text()
    for needle in ("project(CMBDetector)", 'EXTENSION_CATEGORY "Quantification"', "find_package(Slicer REQUIRED)",
                   "add_subdirectory(CMBDetector)", "Slicer_EXTENSION_GENERATE_CONFIG", "Slicer_EXTENSION_CPACK"):
        assert needle in top
    assert "AFFERO" in (ROOT / "LICENSE").read_text()


def test_only_one_module_file_at_module_top():
    assert [p.name for p in MODULE.glob("*.py")] == ["CMBDetector.py"]


def test_cmake_lists_every_python_file_and_resource():
    listed = cmake_entries(MODULE / "CMakeLists.txt")
    shipped = [p for p in MODULE.rglob("*") if p.is_file() and "Testing" not in p.parts
               and "__pycache__" not in p.parts and p.suffix in (".py", ".ui", ".png", ".pt", ".md", ".gz", ".csv")]
    missing = [str(p.relative_to(MODULE)) for p in shipped if str(p.relative_to(MODULE)) not in listed]
    assert missing == []
    stale = [e for e in listed if not (MODULE / e).exists()]
    assert stale == []


def test_ci_calls_readme_test_command():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci/run").read_text()
