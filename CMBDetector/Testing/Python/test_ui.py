"""The module panel (.ui) matches what CMBDetector.py uses, and loads in Qt when PySide6 is there."""

from __future__ import annotations

import ast
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2]
UI_FILE = MODULE_DIR / "Resources" / "UI" / "CMBDetector.ui"
MODULE_FILE = MODULE_DIR / "CMBDetector.py"
ICON_FILE = MODULE_DIR / "Resources" / "Icons" / "CMBDetector.png"
CUSTOM_CLASSES = ("qMRMLWidget", "qMRMLNodeComboBox", "ctkCollapsibleButton", "ctkSliderWidget")
# Keys Slicer binds without a modifier (user guide "Mouse & Keyboard Shortcuts": slice views
# r b f v g t [ ] { } and arrows, 3D views + - Home End PageDown Insert; Markups widget s Delete BackSpace).
SLICER_SINGLE_KEYS = set("rbfvgt[]{}+-s") | {"Left", "Right", "Up", "Down", "Home", "End", "PgDown", "Ins",
                                              "Del", "Delete", "Backspace"}


@pytest.fixture(scope="module")
def ui_root() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


def widgets(root) -> dict[str, ET.Element]:
    return {w.get("name"): w for w in root.iter("widget")}


def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def ui_names_used_by_module() -> set[str]:
    """Every ``self.ui.<name>`` in CMBDetector.py."""
    return {node.attr for node in ast.walk(module_tree())
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}


def parameter_names() -> set[str]:
    """Fields of the ``@parameterNodeWrapper`` class."""
    (cls,) = [n for n in module_tree().body if isinstance(n, ast.ClassDef) and n.name == "CMBDetectorParameterNode"]
    return {item.target.id for item in cls.body if isinstance(item, ast.AnnAssign)}


def test_ui_is_designer_xml_with_qmrmlwidget_root(ui_root):
    assert ui_root.tag == "ui" and ui_root.get("version") == "4.0"
    top = ui_root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "CMBDetector"
    declared = {c.findtext("class") for c in ui_root.iter("customwidget")}
    used = {w.get("class") for w in ui_root.iter("widget")}
    assert used & set(CUSTOM_CLASSES) <= declared


def test_sections_are_collapsible_buttons(ui_root):
    sections = [w for w in ui_root.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    assert [s.find("property[@name='text']/string").text for s in sections] == ["Inputs", "Outputs", "Review", "Results"]


def test_every_widget_the_module_uses_exists(ui_root):
    used = ui_names_used_by_module()
    assert {"applyButton", "cancelButton", "progressBar", "acceptButton", "thresholdSliderWidget"} <= used
    missing = used - set(widgets(ui_root))
    assert not missing, f"CMBDetector.py uses self.ui.{sorted(missing)} that CMBDetector.ui lacks"


def test_parameter_names_map_to_parameter_node_fields(ui_root):
    mapped = {w.get("name"): w.find("property[@name='SlicerParameterName']/string").text
              for w in ui_root.iter("widget") if w.find("property[@name='SlicerParameterName']") is not None}
    assert set(mapped.values()) <= parameter_names()
    assert mapped["inputVolumeSelector"] == "inputVolume" and mapped["thresholdSliderWidget"] == "threshold"


def test_node_selectors_get_the_scene_and_right_types(ui_root):
    receivers = {c.findtext("receiver") for c in ui_root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)" and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    combos = {name: w for name, w in widgets(ui_root).items() if w.get("class") == "qMRMLNodeComboBox"}
    assert set(combos) == receivers

    def node_types(name):
        return [s.text for s in combos[name].findall("property[@name='nodeTypes']/stringlist/string")]

    assert node_types("inputVolumeSelector") == ["vtkMRMLScalarVolumeNode"]
    assert node_types("maskSelector") == ["vtkMRMLLabelMapVolumeNode", "vtkMRMLSegmentationNode"]
    assert node_types("outputFiducialSelector") == ["vtkMRMLMarkupsFiducialNode"]
    assert node_types("outputTableSelector") == ["vtkMRMLTableNode"]
    fiducials = combos["outputFiducialSelector"]
    assert fiducials.find("property[@name='noneEnabled']/bool").text == "true"
    assert fiducials.find("property[@name='addEnabled']/bool").text == "true"


def review_shortcuts() -> dict[str, str]:
    """``REVIEW_SHORTCUTS`` of CMBDetector.py (key -> action)."""
    (value,) = [n.value for n in module_tree().body if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "REVIEW_SHORTCUTS" for t in n.targets)]
    return ast.literal_eval(value)


def test_review_shortcuts_avoid_slicer_keys_and_are_listed_in_the_panel(ui_root):
    keys = review_shortcuts()
    assert sorted(keys.values()) == ["accept", "next point", "previous point", "reject"]
    clashes = [key for key in keys if key in SLICER_SINGLE_KEYS or key.lower() in SLICER_SINGLE_KEYS]
    assert clashes == [], f"{clashes} already do something in Slicer's views"
    texts = {name: w.find("property[@name='text']/string").text for name, w in widgets(ui_root).items()
             if w.find("property[@name='text']/string") is not None}
    for key, action in keys.items():
        assert f"{key} {action}" in texts["shortcutsLabel"]
    by_action = {action: key for key, action in keys.items()}
    assert texts["acceptButton"].endswith(f"({by_action['accept']})")
    assert texts["rejectButton"].endswith(f"({by_action['reject']})")


def test_module_metadata_and_icon():
    text = MODULE_FILE.read_text()
    assert '"Quantification"' in text and "ScriptedLoadableModuleTest" in text
    assert ICON_FILE.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ui_loads_in_qt_with_placeholder_custom_widgets(ui_root):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    QtCore = pytest.importorskip("PySide6.QtCore")
    QtWidgets = pytest.importorskip("PySide6.QtWidgets")
    QtUiTools = pytest.importorskip("PySide6.QtUiTools")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    loader = QtUiTools.QUiLoader()
    placeholders = [type(name, (QtWidgets.QWidget,), {}) for name in CUSTOM_CLASSES]  # kept alive while loading
    for placeholder in placeholders:
        loader.registerCustomWidget(placeholder)
    # The MRML signal/slot signatures exist only in Slicer; they are checked in the XML tests above.
    stripped = ET.fromstring(ET.tostring(ui_root))
    stripped.remove(stripped.find("connections"))
    buffer = QtCore.QBuffer()
    buffer.setData(QtCore.QByteArray(ET.tostring(stripped)))
    buffer.open(QtCore.QIODevice.ReadOnly)
    panel = loader.load(buffer)
    assert panel is not None, loader.errorString()
    for name in ui_names_used_by_module():
        assert panel.findChild(QtCore.QObject, name) is not None, name
    assert panel.findChild(QtWidgets.QPushButton, "applyButton").text() == "Apply"
    assert panel.findChild(QtWidgets.QComboBox, "sensitivityComboBox").count() == 4
    panel.deleteLater()
    app.processEvents()


def test_module_uses_no_undefined_name_or_widget_attribute():
    """Merges must not leave calls to names or widget members that another branch removed."""
    import builtins

    tree = module_tree()
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    undefined = {node.id for node in ast.walk(tree)
                 if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in defined}
    assert not undefined, f"CMBDetector.py uses undefined names {sorted(undefined)}"

    (widget,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CMBDetectorWidget"]

    def self_attributes(ctx):
        return {n.attr for n in ast.walk(widget) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ctx)
                and isinstance(n.value, ast.Name) and n.value.id == "self"}

    members = {n.name for n in widget.body if isinstance(n, ast.FunctionDef)} | self_attributes(ast.Store)
    inherited = {"layout", "parent", "resourcePath", "addObserver", "removeObserver", "removeObservers"}
    missing = self_attributes(ast.Load) - members - inherited
    assert not missing, f"CMBDetectorWidget uses self.{sorted(missing)} that it never defines"
