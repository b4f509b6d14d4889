"""CMB Detector: find cerebral microbleeds on SWI / T2*-GRE and review them in Slicer.

Thin Slicer module: widget, parameter node and self-test. All logic lives in
``CMBDetectorMRML`` (MRML glue, runs headless) and ``CMBDetectorLib`` (the detector).
"""

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from typing import Annotated, Optional, Union

import qt
import slicer
import vtk
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from CMBDetectorLib.regions import REGION_LOCATION
from CMBDetectorLib.config import SENSITIVITY_PRESETS, DetectorConfig, preset_threshold
from CMBDetectorLib.phase import CONVENTIONS as PHASE_CONVENTIONS
from CMBDetectorLib.progress import DetectionCancelled
from CMBDetectorMRML import dependencies
from CMBDetectorMRML import logic as mrmlLogic
from CMBDetectorMRML import markups, readout, report, sampledata, tables
from CMBDetectorMRML.background import BackgroundDetection
from CMBDetectorMRML.range_watch import TrainingRangeWatch
from CMBDetectorMRML.review_cursor import ReviewCursor
from CMBDetectorMRML.review_sync import ReviewSync
from CMBDetectorMRML.worker_client import WorkerClient

DEVICES = {"auto": "auto", "CPU": "cpu", "GPU": "cuda"}
POLL_INTERVAL_MS = 100  # how often the panel reads the detector worker's progress
CONTRIBUTORS = "CMBDetector developers (SlicerCMBDetector project)"  # as EXTENSION_CONTRIBUTORS in CMakeLists.txt
DOCUMENTATION_URL = "https://github.com/cmbdetector/SlicerCMBDetector#using-the-module"
# Review keys, all left free by Slicer (slice views: r b f v g t [ ] { } arrows; markups: s Delete
# BackSpace; 3D views: + - Home End PageDown Insert keypad; application: Ctrl+...).
REVIEW_SHORTCUTS = {"A": "accept", "X": "reject", "N": "next point", "P": "previous point"}


#
# CMBDetector
#


class CMBDetector(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CMB Detector")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = [CONTRIBUTORS]
        self.parent.helpText = _("""
Detects cerebral microbleeds (CMBs) on SWI or T2*-GRE magnitude MRI and helps review them:
candidate search, a 3D CNN and optional YOLO rescoring (fused into one probability) produce
scored points, which you accept or reject one by one (keys A accept, X reject, N / P next /
previous point; listed in the Review section). Missed microbleeds can be placed by hand, also
with the Markups module: the review table follows every point added, moved or deleted there.
Accepted + reader-placed points make the final count. Research use only, not a medical device.
Try it on the synthetic scan under Sample Data > CMB Detector.
See the <a href="{url}">module documentation</a>. License: AGPL-3.0.
""").format(url=DOCUMENTATION_URL)
        self.parent.acknowledgementText = _("""
Built on 3D Slicer, PyTorch and Ultralytics YOLO (AGPL-3.0). Trained on synthetic data only.
""")

        # Sample Data lists the bundled scan once the application has started
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """Add the bundled synthetic SWI scan (magnitude + phase) to the Sample Data module."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(**sampledata.sample_data_source())


#
# CMBDetectorParameterNode
#


@parameterNodeWrapper
class CMBDetectorParameterNode:
    """Panel state saved with the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    modality: Annotated[str, Choice(["auto", "SWI", "GRE"])] = "auto"
    brainMask: Optional[Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode]]
    phaseVolume: Optional[vtkMRMLScalarVolumeNode]
    phaseConvention: Annotated[str, Choice(list(PHASE_CONVENTIONS))] = PHASE_CONVENTIONS[0]
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    sensitivity: Annotated[str, Choice([*SENSITIVITY_PRESETS, "custom"])] = "balanced"
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = SENSITIVITY_PRESETS["balanced"]
    useYolo: bool = True
    outputFiducials: vtkMRMLMarkupsFiducialNode
    outputTable: vtkMRMLTableNode
    pendingOnly: bool = False


#
# CMBDetectorWidget
#


class CMBDetectorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Panel: inputs, Apply/Cancel with progress, review and results."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._sync = None
        self._cursor = None
        self._running = False
        self._run = None  # the BackgroundDetection in progress
        self._cancelRequested = False  # Cancel during an in-process run (Compare with baseline)
        self._worker = None  # WorkerClient; its process stays warm between runs
        self._pollTimer = None
        self._shortcuts = []
        self._registration = None  # (input volume, its AtlasRegistration) of the last Apply
        self._atlasOverlay = None  # (input volume, label map node) the checkbox shows
        self._rangeWatch = None  # whether the selected input lies outside the training ranges

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CMBDetector.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CMBDetectorLogic()
        self._rangeWatch = TrainingRangeWatch(self.logic.outsideTrainingRanges,
                                              lambda outside: self.onSensitivityChanged(0))
        self.ui.progressBar.hide()
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._onPollTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.sensitivityComboBox.connect("currentIndexChanged(int)", self.onSensitivityChanged)
        self.ui.thresholdSliderWidget.connect("valueChanged(double)", self.onThresholdChanged)
        self.ui.outputFiducialSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onFiducialsChanged)
        self.ui.phaseSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node: self.onSensitivityChanged(0))
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputVolumeChanged)
        self.ui.previousButton.connect("clicked(bool)", lambda: self.step(-1))
        self.ui.nextButton.connect("clicked(bool)", lambda: self.step(+1))
        self.ui.acceptButton.connect("clicked(bool)", lambda: self.decide(markups.ACCEPTED))
        self.ui.rejectButton.connect("clicked(bool)", lambda: self.decide(markups.REJECTED))
        self.ui.pendingOnlyCheckBox.connect("toggled(bool)", self.onPendingOnlyToggled)
        self.ui.placeMissedButton.connect("clicked(bool)", self.onPlaceMissed)
        self.ui.exportCSVButton.connect("clicked(bool)", self.onExportCSV)
        self.ui.regionComboBox.addItems(["unknown", *REGION_LOCATION])
        self.ui.regionComboBox.connect("activated(int)", self.onRegionCorrected)
        self.ui.atlasOverlayCheckBox.connect("toggled(bool)", self.onAtlasOverlayToggled)
        self.ui.shortcutsLabel.text = _("Keys: ") + ", ".join(f"{key} {name}" for key, name in REVIEW_SHORTCUTS.items())
        self._setupCompareSection()

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._removeShortcuts()
        self._observeFiducials(None)
        if self._rangeWatch is not None:
            self._rangeWatch.stop()
        self.removeObservers()
        if self._run is not None:
            self._endRun(cancel=True)
        if self._worker is not None:
            self._worker.close()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._addShortcuts()

    def exit(self) -> None:
        self._removeShortcuts()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        if self._run is not None:
            self._endRun(cancel=True)
        self.setParameterNode(None)
        self._observeFiducials(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node ------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume and not firstVolume.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, inputParameterNode: Optional[CMBDetectorParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()
            self.onFiducialsChanged(self._parameterNode.outputFiducials)

    def _checkCanApply(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.inputVolume) and not self._running
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Detect microbleeds in the input volume.") if ready else _(
            "Select an input volume.")

    def onInputVolumeChanged(self, volume) -> None:
        """Follow the selected volume: whether it lies outside the training ranges is read (metadata,
        sidecars) when it is selected and when its metadata, grid or file change, and the slider
        shows its preset threshold."""
        self._rangeWatch.follow(volume)

    def _presetThreshold(self, preset: str) -> float:
        """The preset's threshold for the current input (its table depends on a phase volume, and
        the balanced one on whether the volume lies outside the training ranges)."""
        return preset_threshold(preset, self.ui.phaseSelector.currentNode() is not None, self._rangeWatch.out_of_range)

    def onSensitivityChanged(self, index: int) -> None:
        preset = self.ui.sensitivityComboBox.currentText
        if preset in SENSITIVITY_PRESETS:
            self.ui.thresholdSliderWidget.value = self._presetThreshold(preset)

    def onThresholdChanged(self, value: float) -> None:
        preset = self.ui.sensitivityComboBox.currentText
        if preset in SENSITIVITY_PRESETS and abs(self._presetThreshold(preset) - value) > 1e-6:
            self.ui.sensitivityComboBox.currentText = "custom"

    # -- detection -----------------------------------------------------------------------------

    def _detectorConfig(self) -> DetectorConfig:
        """The detector settings of the panel (Apply and Compare with baseline)."""
        p = self._parameterNode
        preset = p.sensitivity if p.sensitivity in SENSITIVITY_PRESETS else "balanced"
        return DetectorConfig(modality=p.modality.lower(), device=DEVICES[p.device], sensitivity=preset,
                              threshold=None if p.sensitivity in SENSITIVITY_PRESETS else p.threshold,
                              use_yolo=p.useYolo, phase_convention=p.phaseConvention)

    def onApplyButton(self) -> None:
        p = self._parameterNode
        config = self._detectorConfig()
        if not self.logic.ensureDependencies(config.use_yolo):
            self.ui.statusLabel.text = _("Detection needs PyTorch and the packages listed above.")
            return
        with slicer.util.tryWithErrorDisplay(_("Microbleed detection failed."), waitCursor=True):
            self._run = BackgroundDetection(
                self.logic, self._workerClient(), p.inputVolume, config, maskNode=p.brainMask,
                outputFiducialNode=p.outputFiducials, outputTableNode=p.outputTable, phaseNode=p.phaseVolume)
            self._setRunning(True)
            self._pollTimer.start()

    def _workerClient(self) -> WorkerClient:
        """The detector worker (PythonSlicer running CMBDetectorMRML.worker), kept warm between runs."""
        if self._worker is None:
            self._worker = WorkerClient(python=shutil.which("PythonSlicer") or sys.executable)
        return self._worker

    def _onPollTimer(self) -> None:
        """Read the worker's progress; load its result into the scene when it is done."""
        try:
            with slicer.util.tryWithErrorDisplay(_("Microbleed detection failed.")):
                update = self._run.poll()
        except Exception:
            self._endRun()
            self.ui.statusLabel.text = _("Detection failed; the scene was left unchanged.")
            return
        if update.out is None:
            self.ui.progressBar.value = int(round(100 * update.fraction))
            self.ui.statusLabel.text = update.stage
            return
        self._endRun()
        p = self._parameterNode
        p.outputFiducials, p.outputTable = update.out.fiducialNode, update.out.tableNode
        self._showResults(update.out)

    def onCancelButton(self) -> None:
        if self._run is None:  # an in-process run (Compare) stops at its next progress report
            if self._running:
                self._cancelRequested = True
                self.ui.statusLabel.text = _("Cancelling after the current stage...")
            return
        self._endRun(cancel=True)
        self.ui.statusLabel.text = _("Cancelled; the scene was left unchanged.")
        self._worker.start()  # warm up a fresh worker for the next run

    def _onProgress(self, stage: str, fraction: float) -> None:
        """Progress of an in-process run: show the stage and keep the GUI (and Cancel) responsive."""
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = stage
        slicer.app.processEvents()

    def _endRun(self, cancel: bool = False) -> None:
        self._pollTimer.stop()
        if cancel:
            self._run.cancel()
        self._run = None
        self._setRunning(False)

    def _setRunning(self, running: bool) -> None:
        """While a run goes, Apply and the review controls are off and Cancel is on."""
        self._running = running
        self.ui.cancelButton.enabled = running
        self.ui.progressBar.visible = running
        self.ui.progressBar.value = 0
        self._checkCanApply()
        self._updateReview()

    def _showResults(self, out) -> None:
        node = out.fiducialNode
        total = sum(out.result.timings.values())
        self.ui.statusLabel.text = _("{count} microbleed(s) found in {seconds:.1f} s on {device}.").format(
            count=out.result.count, seconds=total, device=out.result.device)
        self.ui.resultsLabel.text = report.run_text(out.result)
        self.logic.applyDisplay(node, self.ui.pendingOnlyCheckBox.checked)
        self._observeFiducials(node)  # a rerun into the same node: start from its first point
        self.step(+1)
        self._registration = (node.GetNodeReference(markups.VOLUME_ROLE), out.registration)
        self._atlasOverlay = None
        self.onAtlasOverlayToggled(self.ui.atlasOverlayCheckBox.checked)

    def onAtlasOverlayToggled(self, checked: bool) -> None:
        """Show or hide the MARS atlas registered onto the input volume as the label layer: added
        once per Apply and volume, with the registration of the last Apply when it ran on this
        volume (else registering the volume now)."""
        if not checked:  # clear the label layer only if it may show the overlay (not the user's label map)
            if self._atlasOverlay is not None:
                slicer.util.setSliceViewerLayers(label=None)
            return
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        shown = self._atlasOverlay
        if volume is not None and (shown is None or shown[0] is not volume or shown[1].GetScene() is None):
            registered = self._registration
            registration = registered[1] if registered is not None and registered[0] is volume else None
            try:  # e.g. the registration failed on a slab: say so, keep the review going
                with slicer.util.tryWithErrorDisplay(_("Cannot show the region atlas."), waitCursor=True):
                    self._atlasOverlay = (volume, self.logic.showAtlasOverlay(volume, registration))
            except Exception:
                return
        if self._atlasOverlay is not None:
            slicer.util.setSliceViewerLayers(label=self._atlasOverlay[1], labelOpacity=0.4)

    def onRegionCorrected(self, index: int) -> None:
        node, current = self._fiducials(), self._currentIndex()
        if node is not None and 0 <= current < node.GetNumberOfControlPoints() and not self._running:
            self.logic.setPointRegion(node, current, self.ui.regionComboBox.currentText)
            self._updateReview()

    # -- review --------------------------------------------------------------------------------

    def _fiducials(self):
        return self._parameterNode.outputFiducials if self._parameterNode else None

    def onFiducialsChanged(self, node) -> None:
        self._observeFiducials(node)
        self._updateReview()

    def _observeFiducials(self, node) -> None:
        """Keep the table in step with ``node``'s points (added, moved, deleted anywhere); new cursor."""
        if self._sync is not None:
            self._sync.stop()
            self._cursor.go_to(-1)  # no highlight left behind on the previous list
        self._cursor = None if node is None else ReviewCursor(node)
        self._sync = None if node is None else ReviewSync(
            node, changed=self._updateReview, locate=lambda ras: self.logic.pointRegion(node, ras))

    def _currentIndex(self) -> int:
        return self._cursor.index if self._cursor is not None else -1

    def step(self, direction: int) -> None:
        """Jump to the next (+1) or previous (-1) point, highlight it and centre the slice views on it."""
        if self._cursor is None or self._running:
            return
        # the checkbox, not the parameter node: it is updated first
        index = self._cursor.step(direction, pending_only=self.ui.pendingOnlyCheckBox.checked)
        if index >= 0:
            slicer.modules.markups.logic().JumpSlicesToNthPointInMarkup(self._cursor.node.GetID(), index, True)
        self._updateReview()

    def decide(self, status: str) -> None:
        node, index = self._fiducials(), self._currentIndex()
        if node is None or index < 0 or self._running:
            return
        self.logic.setPointStatus(node, index, status)
        self.logic.applyDisplay(node, self.ui.pendingOnlyCheckBox.checked)
        self.step(+1)

    def onPendingOnlyToggled(self, checked: bool) -> None:
        node = self._fiducials()
        if node is not None:
            self.logic.applyDisplay(node, checked)
        self._updateReview()

    def onPlaceMissed(self) -> None:
        node = self._fiducials()
        if node is None:
            slicer.util.errorDisplay(_("Run detection (or select a microbleed point list) first."))
            return
        markupsLogic = slicer.modules.markups.logic()
        markupsLogic.SetActiveList(node)
        markupsLogic.StartPlaceMode(False)

    def _updateReview(self, caller=None, event=None) -> None:
        node = self._fiducials()
        hasPoints = node is not None and node.GetNumberOfControlPoints() > 0
        for button in (self.ui.previousButton, self.ui.nextButton, self.ui.acceptButton, self.ui.rejectButton):
            button.enabled = hasPoints and not self._running
        self.ui.regionComboBox.enabled = 0 <= self._currentIndex() < (node.GetNumberOfControlPoints() if node else 0) \
            and not self._running
        self.ui.exportCSVButton.enabled = hasPoints
        self.ui.placeMissedButton.enabled = node is not None and not self._running
        if node is None:
            self.ui.countsLabel.text = ""
            self.ui.currentPointLabel.text = _("No point list")
            return
        self.ui.countsLabel.text = (report.counts_text(self.logic.countsByStatus(node)) + "\n"
                                    + readout.text(readout.read_out(node)))
        if 0 <= self._currentIndex() < node.GetNumberOfControlPoints():
            p = markups.point_info(node, self._currentIndex())
            details = [p.status]
            if p.score is not None:
                details.append(_("score {score:.2f}").format(score=p.score))
            if p.diameter_mm is not None:
                details.append(f"{p.diameter_mm:.1f} mm ({markups.size_class(p.diameter_mm)})")
            details.append(f"{p.location} ({p.side})")
            self.ui.currentPointLabel.text = f"{p.label}: " + ", ".join(details)
            self.ui.regionComboBox.blockSignals(True)
            self.ui.regionComboBox.currentText = p.region
            self.ui.regionComboBox.blockSignals(False)
        else:
            self.ui.currentPointLabel.text = _("No point selected")

    def _addShortcuts(self) -> None:
        self._removeShortcuts()
        actions = {"accept": lambda: self.decide(markups.ACCEPTED), "reject": lambda: self.decide(markups.REJECTED),
                   "next point": lambda: self.step(+1), "previous point": lambda: self.step(-1)}
        for key, name in REVIEW_SHORTCUTS.items():
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.connect("activated()", actions[name])
            self._shortcuts.append(shortcut)

    def _removeShortcuts(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.setParent(None)
            shortcut.deleteLater()
        self._shortcuts = []

    def onExportCSV(self) -> None:
        node = self._fiducials()
        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(), _("Export microbleeds"), f"{node.GetName()}.csv", "CSV (*.csv)")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("CSV export failed."), waitCursor=True):
            rows = self.logic.exportCSV(node, path)
            stem = path[:-4] if path.lower().endswith(".csv") else path
            self.logic.exportCounts(node, f"{stem}_counts.csv")
            page = self.logic.exportReport(node, f"{stem}_report.html")
            self.ui.statusLabel.text = _("Wrote {rows} row(s) to {path}, counts and report {page}.").format(
                rows=rows, path=path, page=page)


    # -- compare with baseline (follow-up = the input volume) -----------------------------------

    def _setupCompareSection(self) -> None:
        """The "Compare with baseline" section, built in code: baseline (+ phase) selectors,
        Compare, stepping through new microbleeds side by side, accept / reject of the change call."""
        import ctk

        from CMBDetectorMRML import followup

        self._followup = followup
        self._comparison, self._changeIndex = None, -1
        section = ctk.ctkCollapsibleButton()
        section.text = _("Compare with baseline")
        section.collapsed = True
        form = qt.QFormLayout(section)
        self.baselineSelector, self.baselinePhaseSelector = (slicer.qMRMLNodeComboBox(), slicer.qMRMLNodeComboBox())
        tips = (_("Earlier scan of the same patient; the input volume above is the follow-up."),
                _("Optional phase image of the baseline scan (same grid)."))
        for selector, tip in zip((self.baselineSelector, self.baselinePhaseSelector), tips):
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.showChildNodeTypes = False
            selector.noneEnabled, selector.addEnabled, selector.removeEnabled = True, False, False
            selector.toolTip = tip
            selector.setMRMLScene(slicer.mrmlScene)
        form.addRow(_("Baseline volume:"), self.baselineSelector)
        form.addRow(_("Baseline phase:"), self.baselinePhaseSelector)
        self.compareButton = qt.QPushButton(_("Compare with baseline"))
        self.compareButton.toolTip = _("Register the input (follow-up) to the baseline, detect at both visits and "
                                       "call every microbleed new, possible new, persistent or resolved.")
        form.addRow(self.compareButton)
        row = qt.QHBoxLayout()
        self.previousChangeButton = qt.QPushButton(_("Previous new"))
        self.nextChangeButton = qt.QPushButton(_("Next new"))
        self.acceptChangeButton, self.rejectChangeButton = qt.QPushButton(_("Accept")), qt.QPushButton(_("Reject"))
        for button in self._changeButtons():
            button.enabled = False
            row.addWidget(button)
        form.addRow(row)
        self.compareLabel = qt.QLabel("")
        self.compareLabel.wordWrap = True
        form.addRow(self.compareLabel)
        self.layout.addWidget(section)
        self.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.previousChangeButton.connect("clicked(bool)", lambda: self.stepChange(-1))
        self.nextChangeButton.connect("clicked(bool)", lambda: self.stepChange(+1))
        self.acceptChangeButton.connect("clicked(bool)", lambda: self.decideChange(markups.ACCEPTED))
        self.rejectChangeButton.connect("clicked(bool)", lambda: self.decideChange(markups.REJECTED))

    def _changeButtons(self) -> tuple:
        return self.previousChangeButton, self.nextChangeButton, self.acceptChangeButton, self.rejectChangeButton

    def onCompareButton(self) -> None:
        p = self._parameterNode
        config = self._detectorConfig()
        if self._running or not self.logic.ensureDependencies(config.use_yolo):
            return
        self._cancelRequested = False
        self._setRunning(True)
        try:
            with slicer.util.tryWithErrorDisplay(_("Comparison with the baseline failed."), waitCursor=True):
                try:
                    out = self.logic.compareVisits(
                        self.baselineSelector.currentNode(), p.inputVolume, config,
                        baselinePhaseNode=self.baselinePhaseSelector.currentNode(), followupPhaseNode=p.phaseVolume,
                        progress=self._onProgress, cancel=lambda: self._cancelRequested)
                except DetectionCancelled:
                    self.ui.statusLabel.text = _("Cancelled; the scene was left unchanged.")
                    return
                self._comparison, self._changeIndex = out, -1
                self._showSideBySide(self.baselineSelector.currentNode(), p.inputVolume)
                self._updateCompareSummary()
                self.stepChange(+1)
        finally:
            self._setRunning(False)

    def _showSideBySide(self, baseline, followupVolume) -> None:
        """Follow-up (left) and baseline (right) side by side, axial, same zoom and orientation."""
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
        for name, volume in (("Red", followupVolume), ("Yellow", baseline)):
            sliceWidget = layoutManager.sliceWidget(name)
            if sliceWidget is None:
                continue
            composite = sliceWidget.sliceLogic().GetSliceCompositeNode()
            composite.SetLinkedControl(False)  # each view shows its own visit; the link below follows the registration
            composite.SetBackgroundVolumeID(volume.GetID())
            sliceWidget.mrmlSliceNode().SetOrientation("Axial")
            sliceWidget.sliceLogic().FitSliceToAll()
        red = layoutManager.sliceWidget("Red")
        if red is not None:  # scrolling the follow-up moves the baseline view to the same anatomy
            self.removeObserver(red.mrmlSliceNode(), vtk.vtkCommand.ModifiedEvent, self._followSlice)
            self.addObserver(red.mrmlSliceNode(), vtk.vtkCommand.ModifiedEvent, self._followSlice)

    def _followSlice(self, caller, event) -> None:
        """Keep the baseline (Yellow) view on the follow-up (Red) view's slice, mapped to baseline."""
        yellow = slicer.app.layoutManager().sliceWidget("Yellow")
        if self._comparison is None or yellow is None:
            return
        sliceToRAS = caller.GetSliceToRAS()
        centre = [sliceToRAS.GetElement(row, 3) for row in range(3)]
        registration = self._comparison.comparison.change.registration
        yellow.mrmlSliceNode().JumpSliceByOffsetting(*registration.to_baseline(centre)[0])

    def _newPoints(self) -> list:
        """(list node, index) of every new and possible new microbleed of the last comparison."""
        if self._comparison is None:
            return []
        lists = self._comparison.followupLists
        return [(lists[c], i) for c in (self._followup.NEW, self._followup.POSSIBLE_NEW)
                for i in range(lists[c].GetNumberOfControlPoints())]

    def stepChange(self, direction: int) -> None:
        """Centre the follow-up view on the next new microbleed and the baseline view on the
        place it maps to (the registration), so both show the same anatomy."""
        points = self._newPoints()
        for button in self._changeButtons():
            button.enabled = bool(points)
        if not points:
            return
        self._changeIndex = (self._changeIndex + direction) % len(points)
        node, index = points[self._changeIndex]
        info = markups.point_info(node, index)
        matched = self._comparison.comparison.change.registration.to_baseline(info.ras)[0]
        layoutManager = slicer.app.layoutManager()
        for name, ras in (("Red", info.ras), ("Yellow", matched)):
            if layoutManager.sliceWidget(name) is not None:
                layoutManager.sliceWidget(name).mrmlSliceNode().JumpSliceByCentering(*ras)
        self.compareLabel.text = _("{label} ({status}), score {score}; {n} of {total}.").format(
            label=info.label, status=info.status, score=info.score, n=self._changeIndex + 1, total=len(points))

    def decideChange(self, status: str) -> None:
        points = self._newPoints()
        if not points or self._changeIndex < 0:
            return
        node, index = points[self._changeIndex]
        self._followup.set_change_status(self._comparison.tableNode, node, index, status)
        self._updateCompareSummary()
        self.stepChange(+1)

    def _updateCompareSummary(self) -> None:
        counts = self._followup.reviewed_counts(self._comparison.tableNode)
        registration = self._comparison.comparison.change.registration
        self.ui.resultsLabel.text = _(
            "New {new}, possible new {possible}, persistent {persistent}, resolved {resolved}.\n"
            "ARIA-H radiographic severity: {grade} (if every possible new is confirmed: {graded}).\n"
            "Registration: brain overlap (Dice) {dice:.2f}.").format(
            new=counts[self._followup.NEW], possible=counts[self._followup.POSSIBLE_NEW],
            persistent=counts[self._followup.PERSISTENT], resolved=counts[self._followup.RESOLVED],
            grade=self._followup.aria_h_grade(counts[self._followup.NEW]),
            graded=self._followup.aria_h_grade(counts[self._followup.NEW] + counts[self._followup.POSSIBLE_NEW]),
            dice=registration.dice) + "".join(f"\nWarning: {w}" for w in self._comparison.warnings)


#
# CMBDetectorLogic
#


class CMBDetectorLogic(ScriptedLoadableModuleLogic, mrmlLogic.CMBDetectorLogic):
    """Slicer logic: the headless ``CMBDetectorMRML.logic.CMBDetectorLogic`` plus the parameter
    node and first-use installation of PyTorch/ultralytics. Can be used without the widget."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        mrmlLogic.CMBDetectorLogic.__init__(self)

    def getParameterNode(self):
        return CMBDetectorParameterNode(super().getParameterNode())

    @staticmethod
    def missingPackages(useYolo: bool = True) -> list:
        """What the first Apply would install (empty when detection can run)."""
        return dependencies.install_plan(useYolo).describe()

    def ensureDependencies(self, useYolo: bool = True) -> bool:
        """Ask once, then install only what is missing without touching what Slicer bundles
        (plan, commands and checks: ``CMBDetectorMRML.dependencies``)."""
        plan = dependencies.install_plan(useYolo)
        if plan.empty:
            return True
        if (plan.torch or plan.torchvision) and importlib.util.find_spec("PyTorchUtils") is None:
            slicer.util.errorDisplay(_("CMB Detector needs PyTorch. {hint}").format(
                hint=dependencies.PYTORCH_EXTENSION_HINT))
            return False
        if not slicer.app.testingEnabled() and not slicer.util.confirmOkCancelDisplay(
                _("CMB Detector needs these Python packages: {names}. Install them now? This downloads "
                  "several hundred MB and can take a few minutes. Packages that Slicer bundles (numpy, SciPy, "
                  "SimpleITK, Pillow...) are left as they are. The YOLO rescoring stage uses Ultralytics YOLO, "
                  "which is AGPL-3.0 software.").format(names=", ".join(plan.describe())),
                windowTitle=_("Install dependencies")):
            return False
        installed = False  # tryWithErrorDisplay shows an error and goes on
        with slicer.util.tryWithErrorDisplay(_("Installing dependencies failed."), waitCursor=True):
            if plan.torch or plan.torchvision:
                self._installTorch(plan)
            before = dependencies.installed_distributions()
            with tempfile.TemporaryDirectory() as folder:
                constraints = os.path.join(folder, "constraints.txt")
                with open(constraints, "w") as f:
                    f.write(dependencies.constraints_text(before))
                for args in plan.pip_commands(constraints):
                    slicer.util.pip_install(args)
            dependencies.verify_install(plan, before)
            installed = True
        importlib.invalidate_caches()
        return installed and dependencies.install_plan(useYolo).empty

    @staticmethod
    def _installTorch(plan) -> None:
        """torch through the PyTorch extension (it picks the CUDA build); torchvision alone is
        pinned to the installed torch so that an existing CUDA torch stays."""
        import PyTorchUtils

        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if plan.torch:
            torchLogic.installTorch(askConfirmation=False)
        else:
            torchVersion = importlib.metadata.version("torch").split("+")[0]
            torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=f"=={torchVersion}")


#
# CMBDetectorTest
#


class CMBDetectorTest(ScriptedLoadableModuleTest):
    """The Sample Data scan, review and export on points at its true microbleeds (always, no
    torch needed), then detection with and without phase (when torch and ultralytics import)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_CMBDetector_sample_data()
        self.setUp()
        self.test_CMBDetector_review_without_detector()
        self.setUp()
        self.test_CMBDetector_detection()

    @staticmethod
    def _loadSample():
        """Magnitude and phase nodes of the bundled scan, loaded through Sample Data."""
        import SampleData

        registerSampleData()  # done at startup too; registering again is a no-op
        return SampleData.SampleDataLogic().downloadSamples(sampledata.SAMPLE_NAME)

    def test_CMBDetector_sample_data(self):
        self.delayDisplay("Loading the sample scan from Sample Data")
        magnitude, phase = self._loadSample()
        self.assertEqual([magnitude.GetName(), phase.GetName()], [n for n, _sha in sampledata.FILES.values()])
        self.assertEqual(magnitude.GetImageData().GetDimensions(), phase.GetImageData().GetDimensions())

    @staticmethod
    def _truthPoints(volume):
        """Pending points and their table at the sample's true microbleeds, as a run would write them."""
        import csv

        import numpy as np

        from CMBDetectorLib.results import Detection, DetectionResult
        from CMBDetectorMRML import volumes

        with open(sampledata.SAMPLE_DIR / "SampleSWI_objects.csv", newline="") as f:
            rows = [row for row in csv.DictReader(f) if row["kind"] == "cmb"]
        geometry = volumes.world_geometry(volume)
        ras = np.array([[float(row[axis]) for axis in "RAS"] for row in rows])
        ijk = geometry.ras_to_ijk_points(ras)
        result = DetectionResult(geometry=geometry, detections=[
            Detection(ras=tuple(ras[n]), ijk=tuple(ijk[n]), diameter_mm=float(row["diameter_mm"]),
                      candidate_score=1.0, cnn_score=1.0, yolo_score=None, score=1.0, location=row["location"])
            for n, row in enumerate(rows)])
        fiducials = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "True CMBs")
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "True CMBs table")
        markups.fill_fiducials(fiducials, result)
        fiducials.SetNodeReferenceID(markups.VOLUME_ROLE, volume.GetID())
        fiducials.SetNodeReferenceID(markups.TABLE_ROLE, table.GetID())
        tables.update_table(table, fiducials)
        return fiducials, table

    def test_CMBDetector_review_without_detector(self):
        magnitude, _phase = self._loadSample()
        fiducials, table = self._truthPoints(magnitude)
        self.assertGreater(fiducials.GetNumberOfControlPoints(), 2)
        self._reviewAndExport(CMBDetectorLogic(), fiducials, table)

    def _reviewAndExport(self, logic, fiducials, table):
        """Accept, reject, add a reader point, filter, count, export CSV and .mrk.json, reload."""
        self.delayDisplay("Reviewing")
        n = fiducials.GetNumberOfControlPoints()
        logic.setPointStatus(fiducials, 0, markups.ACCEPTED)
        logic.setPointStatus(fiducials, 1, markups.REJECTED)
        reader = logic.addReaderPoint(fiducials, markups.point_info(fiducials, 0).ras)
        counts = logic.countsByStatus(fiducials)
        self.assertEqual((counts.accepted, counts.rejected, counts.reader_added), (1, 1, 1))
        self.assertEqual((counts.final, counts.pending), (2, n - 2))
        self.assertEqual(table.GetNumberOfRows(), n + 1)

        logic.applyDisplay(fiducials, pendingOnly=True)
        visible = [bool(fiducials.GetNthControlPointVisibility(i)) for i in range(n + 1)]
        self.assertEqual(visible, [False, False] + [True] * (n - 2) + [False])
        logic.applyDisplay(fiducials, pendingOnly=False)
        self.assertTrue(fiducials.GetNthControlPointVisibility(reader))
        self.assertFalse(fiducials.GetNthControlPointVisibility(1))

        folder = slicer.app.temporaryPath
        csvPath = os.path.join(folder, "CMBDetectorSelfTest.csv")
        self.assertEqual(logic.exportCSV(table, csvPath), n + 1)
        with open(csvPath) as f:
            self.assertEqual(sum(1 for _line in f), n + 2)
        markupsPath = os.path.join(folder, "CMBDetectorSelfTest.mrk.json")
        logic.saveMarkups(fiducials, markupsPath)
        reloaded = slicer.util.loadMarkups(markupsPath)
        self.assertEqual([p.status for p in markups.points(reloaded)], [p.status for p in markups.points(fiducials)])

        self.delayDisplay("Deleting a point outside the module updates table and counts")
        sync = ReviewSync(fiducials)
        fiducials.RemoveNthControlPoint(1)  # the rejected one
        self.assertEqual(table.GetNumberOfRows(), n)
        self.assertEqual(logic.countsByStatus(fiducials).rejected, 0)
        sync.stop()

    def test_CMBDetector_detection(self):
        logic = CMBDetectorLogic()
        missing = logic.missingPackages()
        if missing:
            self.delayDisplay(f"Detection not tested: missing Python packages {missing}")
            return
        magnitude, phase = self._loadSample()
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()

        self.delayDisplay("Detecting")
        out = logic.process(magnitude)
        self.assertGreater(out.result.count, 1)
        self.assertEqual(out.fiducialNode.GetNumberOfControlPoints(), out.result.count)
        self.assertEqual(out.tableNode.GetNumberOfRows(), out.result.count)
        self._reviewAndExport(logic, out.fiducialNode, out.tableNode)

        rerun = logic.process(magnitude, outputFiducialNode=out.fiducialNode, outputTableNode=out.tableNode)
        self.assertIsNot(rerun.fiducialNode, out.fiducialNode)
        self.assertGreater(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)

        self.delayDisplay("Detecting with the phase image")
        withPhase = logic.process(magnitude, phaseNode=phase)
        self.assertTrue(withPhase.result.used_phase and withPhase.result.has_microbleeds)
        self.assertTrue(all(d.paramagnetic_score is not None for d in withPhase.result.detections))
        self.delayDisplay("Test passed")
