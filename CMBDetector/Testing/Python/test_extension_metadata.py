"""Extension catalogue entry, metadata and Sample Data registration agree with each other and the tree."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from CMBDetectorMRML import sampledata

ROOT = Path(__file__).resolve().parents[3]
# Properties of https://github.com/Slicer/ExtensionsIndex/blob/main/schemas/slicer-extension-catalog-entry-schema-v1.0.2.json
# (additionalProperties: false; required: $schema, category, scm_url).
CATALOGUE_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                        "dicom_support_rule", "build_subdirectory", "enabled", "tier"}


def cmake_set(name: str) -> str:
    return re.search(rf'set\({name} "([^"]*)"\)', (ROOT / "CMakeLists.txt").read_text()).group(1)


def s4ext(key: str) -> str:
    return re.search(rf"^{key} (.*)$", (ROOT / "CMBDetector.s4ext").read_text(), re.M).group(1)


def test_catalogue_json_follows_the_schema_and_the_cmake_metadata():
    entry = json.loads((ROOT / "CMBDetector.json").read_text())
    assert set(entry) <= CATALOGUE_PROPERTIES and {"$schema", "category", "scm_url"} <= set(entry)
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["category"] == cmake_set("EXTENSION_CATEGORY") == s4ext("category")
    assert entry["build_dependencies"] == cmake_set("EXTENSION_DEPENDS").split() == s4ext("depends").split()
    assert entry["scm_url"] == s4ext("scmurl") and entry["scm_url"].startswith(cmake_set("EXTENSION_HOMEPAGE"))
    assert 1 <= entry["tier"] <= 5


def test_module_metadata_names_contributors_documentation_and_license():
    module = (ROOT / "CMBDetector" / "CMBDetector.py").read_text()
    contributors = re.search(r'^CONTRIBUTORS = "([^"]+)"', module, re.M).group(1)
    assert contributors == cmake_set("EXTENSION_CONTRIBUTORS") == s4ext("contributors")
    assert re.fullmatch(r"[^()]+ \([^()]+\)", contributors)  # "Name (Organisation)", as Slicer asks
    docs = re.search(r'^DOCUMENTATION_URL = "([^"]+)"', module, re.M).group(1)
    assert docs.startswith(cmake_set("EXTENSION_HOMEPAGE"))
    anchor = docs.split("#")[1]
    headings = re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), re.M)
    assert anchor in [re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings]
    help_text = module[module.index("self.parent.helpText"):module.index("self.parent.acknowledgementText")]
    assert '<a href="{url}">' in help_text and "format(url=DOCUMENTATION_URL)" in help_text
    assert "AGPL-3.0" in help_text and "AGPL-3.0" in cmake_set("EXTENSION_DESCRIPTION") == s4ext("description")


def test_sample_data_source_points_at_the_bundled_files_with_their_checksums():
    source = sampledata.sample_data_source()
    n = len(sampledata.FILES)
    assert all(len(source[key]) == n for key in ("uris", "fileNames", "nodeNames", "checksums", "loadFileTypes"))
    assert Path(source["thumbnailFileName"]).is_file()
    for uri, name, checksum in zip(source["uris"], source["fileNames"], source["checksums"]):
        path = Path(unquote(urlparse(uri).path))
        assert urlparse(uri).scheme == "file" and path.name == name and path.is_file()
        assert checksum == "SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest(), (
            f"{name} changed: update its SHA256 in CMBDetectorMRML/sampledata.py")
