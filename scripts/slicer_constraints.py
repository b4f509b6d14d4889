"""Write the pip constraints file of what a Slicer release bundles in its Python.

Reads Slicer's SuperBuild files at a release tag of a Slicer git clone: the Python version
(CMakeLists.txt), every ``name==version`` pin of SuperBuild/External_python*.cmake (numpy, scipy,
Pillow, requests, pydicom...) and SimpleITK (a pip pin from 5.12, before that Slicer's SimpleITK
fork, whose tag comment names the version). Each line says which file it came from.

    python scripts/slicer_constraints.py /path/to/Slicer v5.10.0 \
        > CMBDetector/Testing/Python/constraints/slicer-5.10.txt
"""

from __future__ import annotations

import argparse
import re
import subprocess

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s\\;]+)", re.M)
PYTHON = re.compile(r'set\(Slicer_REQUIRED_PYTHON_VERSION "([0-9.]+)"\)')
SIMPLEITK_FORK = re.compile(r"#\s*slicer-v([0-9][0-9.]*[0-9])-")


def git(slicer: str, *args: str) -> str:
    return subprocess.run(["git", "-C", slicer, *args], check=True, capture_output=True, text=True).stdout


def constraints(slicer: str, tag: str) -> str:
    python = PYTHON.search(git(slicer, "show", f"{tag}:CMakeLists.txt")).group(1)
    lines = [f"# Python packages bundled with 3D Slicer {tag.lstrip('v')} (Python {python}, from CMakeLists.txt),",
             f"# read from https://github.com/Slicer/Slicer/tree/{tag}/SuperBuild by scripts/slicer_constraints.py.",
             "# vtk is Slicer's own build without pip metadata: it must never appear in an install."]
    pins = {}
    files = git(slicer, "ls-tree", "--name-only", tag, "SuperBuild/").split()
    for path in sorted(f for f in files if re.match(r"SuperBuild/External_python.*\.cmake$", f)):
        for name, version in PIN.findall(git(slicer, "show", f"{tag}:{path}")):
            pins.setdefault(name.lower(), (version, path))
    if "simpleitk" not in pins and "SuperBuild/External_SimpleITK.cmake" in files:
        path = "SuperBuild/External_SimpleITK.cmake"
        pins["simpleitk"] = (SIMPLEITK_FORK.search(git(slicer, "show", f"{tag}:{path}")).group(1),
                             f"{path} (Slicer's SimpleITK fork, GIT_TAG comment)")
    lines += [f"{name}=={version}  # {source}" for name, (version, source) in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slicer", help="a git clone of https://github.com/Slicer/Slicer")
    parser.add_argument("tag", help="release tag, e.g. v5.10.0")
    args = parser.parse_args()
    print(constraints(args.slicer, args.tag), end="")


if __name__ == "__main__":
    main()
