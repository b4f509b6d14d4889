"""``CMBDetectorLogic``: run the detector on volume nodes or files and manage the review.

Usable without the widget and headless (slicer-core)::

    logic = CMBDetectorLogic()
    out = logic.process(volumeNode, DetectorConfig(sensitivity="balanced"))
    logic.setPointStatus(out.fiducialNode, 0, "accepted")
    logic.countsByStatus(out.fiducialNode).final
    logic.exportCSV(out.fiducialNode, "cmbs.csv")
    logic.processDirectory("scans/", "results/")   # writes <scan>.mrk.json, <scan>.csv, summary.csv
    logic.exportReport(out.fiducialNode, "report.html")  # counts + thumbnails of the reviewed points

``processDirectory`` takes image files, BIDS folders (``part-mag``/``part-phase`` pairs) and DICOM
series (magnitude paired with phase), in the folder and its subfolders.

A phase image (``phaseNode``; for files ``X_phase.nii.gz`` beside ``X_mag.nii.gz``) lets the
detector tell paramagnetic microbleeds from diamagnetic calcifications.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import slicer
import vtk

from CMBDetectorLib import location, trained_range
from CMBDetectorLib.config import DetectorConfig
from CMBDetectorLib.errors import CMBDetectorError
from CMBDetectorLib.geometry import Geometry
from CMBDetectorLib.progress import CancelCheck, DetectionCancelled, ProgressCallback, StageReporter
from CMBDetectorLib.regions import UNKNOWN, RegionLabel
from CMBDetectorLib.results import DetectionResult

from . import (acquisition_info, atlas_overlay, markups, outputs, readout, report_page, review_sync, runwarnings,
               scans, tables, volumes)
from .files import atomic_target, atomic_write_text, check_output_dir
from .scans import image_files  # noqa: F401  (public name kept for callers)
from .scene import new_scene

log = logging.getLogger(__name__)

SUMMARY_NAME = "summary.csv"
SUMMARY_COLUMNS = ("file", "status", "n_detections", "error", "warnings") + readout.SUMMARY_FIELDS
OK, FAILED, SKIPPED, NOT_RUN = "ok", "failed", "skipped", "not run"


@dataclass
class DetectorInputs:
    """The arrays :func:`pipeline.detect` takes, copied from the nodes (the nodes are not kept)."""

    array: np.ndarray
    geometry: Geometry
    mask: np.ndarray | None = None
    phase: np.ndarray | None = None
    acquisition: trained_range.Acquisition = trained_range.Acquisition()  # what the node's metadata says


@dataclass
class ProcessResult:
    """What :meth:`CMBDetectorLogic.process` produced in the scene."""

    fiducialNode: object
    tableNode: object
    result: DetectionResult
    registration: object = None  # location.AtlasRegistration, None when the location stage did not run


@dataclass(frozen=True)
class FileOutputs:
    """Files written by :meth:`CMBDetectorLogic.processFile` for one scan."""

    markups_path: Path
    csv_path: Path
    n_detections: int
    timings: dict[str, float]
    phase_path: Path | None = None
    warnings: tuple[str, ...] = ()
    counts_path: Path | None = None
    report_path: Path | None = None
    counts: dict = field(default_factory=dict)  # readout.summary_fields


@dataclass(frozen=True)
class ScanOutcome:
    """One row of ``summary.csv``."""

    file: str
    status: str  # "ok", "failed", "skipped" (not a scan CMBDetector can read) or "not run" (batch stopped)
    n_detections: int | None = None
    error: str = ""
    warnings: tuple[str, ...] = ()
    counts: dict = field(default_factory=dict)  # readout.summary_fields


@dataclass
class BatchResult:
    """Outcome of :meth:`CMBDetectorLogic.processDirectory`."""

    outcomes: list[ScanOutcome] = field(default_factory=list)
    cancelled: bool = False
    summary_path: Path | None = None
    summary_error: str = ""  # why summary.csv could not be written, if so

    @property
    def failed(self) -> list[ScanOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    def with_status(self, status: str) -> list[ScanOutcome]:
        return [o for o in self.outcomes if o.status == status]


def _node_ids(scene) -> set[str]:
    return {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())}


@contextmanager
def _rollback_on_error(scene) -> Iterator[None]:
    """Remove every node added to ``scene`` inside the block if the block raises."""
    before = _node_ids(scene)
    try:
        yield
    except BaseException:
        added = [scene.GetNthNode(n) for n in range(scene.GetNumberOfNodes())]
        for node in reversed([n for n in added if n.GetID() not in before]):
            scene.RemoveNode(node)
        raise


def _scaled(progress: ProgressCallback | None, start: float, span: float) -> ProgressCallback | None:
    if progress is None:
        return None
    return lambda stage, fraction: progress(stage, start + span * fraction)


class CMBDetectorLogic:
    """Detection + review logic on MRML nodes; no Qt, no application singletons."""

    def __init__(self) -> None:
        self._registrations = {}  # fiducial node ID -> the location stage's registration of its run

    # -- detection -----------------------------------------------------------------------------

    def process(self, inputVolumeNode, config: DetectorConfig | None = None, maskNode=None,
                outputFiducialNode=None, outputTableNode=None, progress: ProgressCallback | None = None,
                cancel: CancelCheck | None = None, replace: bool = False, phaseNode=None) -> ProcessResult:
        """Detect CMBs in ``inputVolumeNode`` and write them as pending points plus a table.

        ``phaseNode`` (optional) is the phase image of the same acquisition, on the same grid.
        The input node is never modified. An output fiducial node holding reviewed points
        (accepted, rejected or reader-added) is kept and a new node is created, unless
        ``replace`` is True. If the run fails or is cancelled, nodes it created are removed.
        """
        from CMBDetectorLib import pipeline  # heavy (torch); imported on first use

        report = StageReporter(progress, cancel)
        report("Reading volume", 0.0)
        inputs = self.detectorInputs(inputVolumeNode, maskNode, phaseNode, outputFiducialNode, outputTableNode)
        result = pipeline.detect(inputs.array, inputs.geometry, config=config, mask=inputs.mask,
                                 progress=_scaled(progress, 0.02, 0.93), cancel=cancel, phase=inputs.phase,
                                 acquisition=inputs.acquisition)
        registration = None
        if (config or DetectorConfig()).locate:
            report(location.STAGE, 0.95)
            located = location.locate(result, inputs.array, inputs.geometry, inputs.mask)
            result, registration = located.result, located.registration
        report("Creating markups", 0.96)
        return self.loadResult(inputVolumeNode, result, outputFiducialNode, outputTableNode, replace, registration,
                               inputs.acquisition)

    @staticmethod
    def outsideTrainingRanges(volumeNode) -> bool:
        """Whether the volume's grid or acquisition metadata lies outside the models' training
        ranges (:mod:`CMBDetectorLib.trained_range`), where the balanced preset has its own threshold."""
        ijk_to_ras = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijk_to_ras)  # its own grid: a parent transform does not change the slices
        geometry = Geometry(volumes.matrix_to_numpy(ijk_to_ras))
        acquisition = acquisition_info.read(volumeNode, acquisition_info.application_database())
        return bool(trained_range.outside_training(geometry, acquisition))

    @staticmethod
    def detectorInputs(inputVolumeNode, maskNode=None, phaseNode=None, outputFiducialNode=None,
                       outputTableNode=None) -> DetectorInputs:
        """Check that the nodes share one scene and copy the arrays (and read the acquisition
        metadata) the detector needs."""
        array, geometry = volumes.volume_to_array(inputVolumeNode)
        scene = inputVolumeNode.GetScene()
        if scene is None:
            raise CMBDetectorError(f"Input volume '{inputVolumeNode.GetName()}' is not in a scene.")
        for node in (maskNode, phaseNode, outputFiducialNode, outputTableNode):
            if node is not None and node.GetScene() is not scene:
                raise CMBDetectorError(f"'{node.GetName()}' is not in the input volume's scene.")
        mask = None if maskNode is None else volumes.mask_to_array(maskNode, inputVolumeNode)
        phase = None if phaseNode is None else volumes.phase_to_array(phaseNode, inputVolumeNode)
        acquisition = acquisition_info.read(inputVolumeNode, acquisition_info.application_database())
        return DetectorInputs(array, geometry, mask, phase, acquisition)

    def loadResult(self, inputVolumeNode, result: DetectionResult, outputFiducialNode=None,
                   outputTableNode=None, replace: bool = False, registration=None,
                   acquisition: trained_range.Acquisition | None = None) -> ProcessResult:
        """Write ``result`` (detected on ``inputVolumeNode``) as pending points plus a table, as
        :meth:`process` does; on error the nodes it created are removed. ``registration``: the
        location stage's, if it ran here (kept for the atlas overlay). A scan acquired outside the
        models' training ranges gets a warning (:mod:`CMBDetectorLib.trained_range`); ``acquisition``
        is what the detector was given (None: read from the node)."""
        scene = inputVolumeNode.GetScene()
        if scene is None:
            raise CMBDetectorError(f"Input volume '{inputVolumeNode.GetName()}' is no longer in the scene.")
        if acquisition is None:
            acquisition = acquisition_info.read(inputVolumeNode, acquisition_info.application_database())
        out_of_range = trained_range.range_warning(result.geometry, acquisition)
        if out_of_range and out_of_range not in result.warnings:
            result.warnings.append(out_of_range)
        with _rollback_on_error(scene):
            fiducials, table = self._output_nodes(inputVolumeNode, outputFiducialNode, outputTableNode,
                                                  replace, result)
            markups.fill_fiducials(fiducials, result)
            runwarnings.store(fiducials, result.warnings)
            fiducials.SetNodeReferenceID(markups.VOLUME_ROLE, inputVolumeNode.GetID())
            fiducials.SetNodeReferenceID(markups.TABLE_ROLE, table.GetID())
            tables.update_table(table, fiducials)
            readout.update_counts_table(fiducials)
        if registration is not None:
            self._registrations[fiducials.GetID()] = registration
        return ProcessResult(fiducials, table, result, registration)

    @staticmethod
    def _output_nodes(volume, fiducials, table, replace: bool, result: DetectionResult):
        scene = volume.GetScene()
        if fiducials is not None and not replace and markups.has_review(fiducials):
            result.warnings.append(
                f"'{fiducials.GetName()}' holds reviewed points; the new results went to a new node.")
            fiducials, table = None, None
        if fiducials is None:
            fiducials = scene.AddNewNodeByClass(
                "vtkMRMLMarkupsFiducialNode", scene.GenerateUniqueName(f"{volume.GetName()} CMBs"))
        elif table is None:
            table = fiducials.GetNodeReference(markups.TABLE_ROLE)
        if table is None:
            table = scene.AddNewNodeByClass(
                "vtkMRMLTableNode", scene.GenerateUniqueName(f"{fiducials.GetName()} table"))
        return fiducials, table

    def compareVisits(self, baselineNode, followupNode, config: DetectorConfig | None = None,
                      baselinePhaseNode=None, followupPhaseNode=None, progress: ProgressCallback | None = None,
                      cancel: CancelCheck | None = None):
        """New / possible new / persistent / resolved microbleeds of ``followupNode`` against
        ``baselineNode`` (any protocols, grids and head positions); see
        :func:`CMBDetectorMRML.followup.compare_nodes`. A failed registration raises
        ``CMBDetectorError`` and adds nothing to the scene."""
        from . import followup

        return followup.compare_nodes(baselineNode, followupNode, config, baselinePhaseNode, followupPhaseNode,
                                      progress=progress, cancel=cancel)

    # -- review --------------------------------------------------------------------------------

    @staticmethod
    def _refresh_table(fiducialNode) -> None:
        table = fiducialNode.GetNodeReference(markups.TABLE_ROLE)
        if table is not None:
            tables.update_table(table, fiducialNode)
        readout.refresh_counts_table(fiducialNode)

    @staticmethod
    def _ijk(fiducialNode, ras):
        return review_sync.linked_ijk(fiducialNode, ras)

    def setPointStatus(self, fiducialNode, index: int, status: str) -> None:
        """Set a point's review status (pending/accepted/rejected); refreshes the linked table."""
        markups.set_status(fiducialNode, index, status)
        self._refresh_table(fiducialNode)

    def setPointRegion(self, fiducialNode, index: int, region: str) -> None:
        """The reader's correction of a point's MARS region (its class follows); refreshes the table."""
        markups.set_region(fiducialNode, index, region)
        self._refresh_table(fiducialNode)

    def showAtlasOverlay(self, volumeNode, registration=None, name: str | None = None):
        """Add the MARS regions registered onto ``volumeNode`` as a new label map node with its
        colour table (an optional overlay); returns the node. ``registration`` None registers
        the volume now (e.g. a point list loaded from a file; a run's :class:`ProcessResult` has one)."""
        if registration is None:
            registration = location.register_to_template(*volumes.volume_to_array(volumeNode))
        return atlas_overlay.add_overlay(volumeNode, registration, name)

    def pointRegion(self, fiducialNode, ras) -> RegionLabel:
        """MARS class, region and side of world ``ras`` through the registration of the run that
        filled ``fiducialNode`` in this session (unknown without one, e.g. a list loaded from file)."""
        registration = self._registrations.get(fiducialNode.GetID())
        return UNKNOWN if registration is None else location.label_points(registration, [ras])[0]

    def getPointStatus(self, fiducialNode, index: int) -> str:
        return markups.get_status(fiducialNode, index)

    def addReaderPoint(self, fiducialNode, ras, diameter_mm: float | None = None) -> int:
        """Add a microbleed the detector missed at world ``ras`` (accepted, source reader), in
        its region when the run that made the list was located (:meth:`pointRegion`)."""
        label = self.pointRegion(fiducialNode, ras)
        index = markups.add_reader_point(fiducialNode, ras, ijk=self._ijk(fiducialNode, ras), diameter_mm=diameter_mm,
                                         location=label.location, region=label.region, side=label.side)
        self._refresh_table(fiducialNode)
        return index

    def markReaderPoint(self, fiducialNode, index: int) -> None:
        """Stamp a point the user just placed in the views as reader-added and accepted."""
        info = markups.point_info(fiducialNode, index)
        label = self.pointRegion(fiducialNode, info.ras)
        markups.mark_reader_point(fiducialNode, index, ijk=self._ijk(fiducialNode, info.ras),
                                  location=label.location, region=label.region, side=label.side)
        self._refresh_table(fiducialNode)

    def countsByStatus(self, fiducialNode) -> markups.ReviewCounts:
        return markups.counts(fiducialNode)

    def summary(self, fiducialNode) -> readout.ReadOut:
        """Definite / possible counts by size, location and region (rejected and >10 mm apart)."""
        return readout.read_out(fiducialNode)

    def applyDisplay(self, fiducialNode, pendingOnly: bool = False) -> None:
        markups.apply_display(fiducialNode, pending_only=pendingOnly)

    # -- files ---------------------------------------------------------------------------------

    def exportCSV(self, tableOrFiducialNode, path) -> int:
        """Write one row per point (atomic); returns the number of rows."""
        return tables.export_csv(tableOrFiducialNode, path)

    def exportCounts(self, fiducialNode, path) -> readout.ReadOut:
        """Write the review's counts (definite/possible by size, location, region and side) as CSV."""
        return readout.write_counts_csv(fiducialNode, path)

    def exportReport(self, fiducialNode, path, scanName: str | None = None) -> Path:
        """Write the one-page HTML report (counts, pattern, a thumbnail per definite microbleed)."""
        return report_page.write_report(fiducialNode, path, scanName)

    def saveMarkups(self, fiducialNode, path) -> None:
        """Write ``fiducialNode`` as .mrk.json (LPS on disk) atomically; the scene is not changed."""
        if not str(path).lower().endswith(".mrk.json"):
            raise CMBDetectorError(f"Markups file name must end with .mrk.json: '{path}'.")
        storage = slicer.vtkMRMLMarkupsJsonStorageNode()
        with atomic_target(path) as tmp:
            storage.SetFileName(str(tmp))
            if not storage.WriteData(fiducialNode):
                raise CMBDetectorError(f"Could not write markups to '{path}'.")

    def processFile(self, path, outputDir, config: DetectorConfig | None = None,
                    progress: ProgressCallback | None = None, cancel: CancelCheck | None = None,
                    name: str | None = None, phasePath=None, overwrite: bool = False,
                    acquisition: trained_range.Acquisition | None = None) -> FileOutputs:
        """Detect CMBs in an image file; write ``<name>.mrk.json``, ``<name>.csv``,
        ``<name>_counts.csv`` and ``<name>_report.html`` to ``outputDir`` (and ``<name>.warnings.txt``
        when the run warned).

        ``phasePath`` None uses the phase image stored beside the scan (``X_phase.nii.gz`` or the
        BIDS ``part-phase`` file) if any. ``config.echo`` picks one echo of a multi-echo file. A
        reviewed ``<name>.mrk.json`` in ``outputDir`` is kept and the results go to ``<name>-run2``
        (see :mod:`.outputs`) unless ``overwrite``. The output folder is checked before any work.
        ``acquisition`` (field strength, echo time) fills in what the scan's own metadata does not
        say, for the trained-range warning.
        """
        if Path(path).is_dir():
            raise CMBDetectorError(f"'{path}' is a folder: run processDirectory on it (the CLI does so for a folder).")
        if not Path(path).is_file():
            raise CMBDetectorError(f"Scan file '{path}' not found.")
        output_dir = check_output_dir(outputDir)
        scan = replace(scans.file_scan(path, phasePath, name), stated=acquisition or trained_range.Acquisition())
        return self._processScan(scan, output_dir, config, progress, cancel, overwrite)

    def _processScan(self, scan: scans.Scan, output_dir: Path, config: DetectorConfig | None,
                     progress: ProgressCallback | None, cancel: CancelCheck | None, overwrite: bool) -> FileOutputs:
        config = config or DetectorConfig()
        headless = new_scene()
        volume, phase, read_warnings = scans.load(headless.scene, scan, config.echo)
        out = self.process(volume, replace(config, echo=None), progress=progress, cancel=cancel, phaseNode=phase)
        name, renamed = outputs.free_name(output_dir, scan.name, overwrite)
        warnings = read_warnings + out.result.warnings + ([renamed] if renamed else [])
        out.result.warnings[:] = warnings
        runwarnings.store(out.fiducialNode, warnings)
        markups_path, csv_path = output_dir / f"{name}.mrk.json", output_dir / f"{name}.csv"
        try:
            self.exportCSV(out.fiducialNode, csv_path)
            self.saveMarkups(out.fiducialNode, markups_path)
            outputs.write_warnings(output_dir, name, warnings)
            counts_path, report_path = output_dir / f"{name}_counts.csv", output_dir / f"{name}_report.html"
            counts = self.exportCounts(out.fiducialNode, counts_path)
            self.exportReport(out.fiducialNode, report_path, name)
        except OSError as exc:
            raise CMBDetectorError(
                f"Cannot write the results of '{scan.label}' to '{output_dir}' ({exc.strerror or exc}); "
                "check the folder's permissions and free space.") from exc
        return FileOutputs(markups_path, csv_path, out.result.count, dict(out.result.timings), scan.phase_path,
                           tuple(warnings), counts_path, report_path, readout.summary_fields(counts))

    def processDirectory(self, inputDir, outputDir, config: DetectorConfig | None = None,
                         progress: ProgressCallback | None = None, cancel: CancelCheck | None = None,
                         overwrite: bool = False, acquisition: trained_range.Acquisition | None = None) -> BatchResult:
        """Run every scan under ``inputDir`` (image files, BIDS pairs, DICOM series; see
        :func:`.scans.find_scans`); a failing scan is logged and skipped.

        The output folder is checked before any work. ``summary.csv`` (file, status, n_detections,
        error, warnings, then the counts of :data:`readout.SUMMARY_FIELDS`) is rewritten atomically after each scan and lists skipped files (e.g.
        .mgz) with the reason. Cancelling (or Ctrl-C / SIGTERM, re-raised afterwards) stops the
        batch: finished scans keep their outputs and the summary marks the rest "not run".
        ``acquisition`` fills in what each scan's own metadata does not say (see :meth:`processFile`).
        """
        output_dir = check_output_dir(outputDir)
        found, skipped = scans.find_scans(inputDir, exclude=[output_dir])
        found = [replace(s, stated=acquisition or trained_range.Acquisition()) for s in found]
        batch = BatchResult(summary_path=output_dir / SUMMARY_NAME)
        batch.outcomes += [ScanOutcome(s.label, SKIPPED, None, s.reason) for s in skipped]
        if not found:
            self._write_summary(batch)
            reasons = "".join(f"; {s.label}: {s.reason}" for s in skipped)
            raise CMBDetectorError(
                f"No .nii, .nii.gz, .nrrd, .mha, .mhd files or DICOM series in '{inputDir}' "
                f"or its subfolders{reasons}.")
        try:
            self._runScans(found, output_dir, batch, config, progress, cancel, overwrite)
        except KeyboardInterrupt:
            self._stop(batch, found[len(batch.outcomes) - len(skipped):])
            raise
        if batch.cancelled:
            self._stop(batch, found[len(batch.outcomes) - len(skipped):])
        return batch

    def _runScans(self, found: list, output_dir: Path, batch: BatchResult, config, progress, cancel,
                  overwrite: bool) -> None:
        """Run the scans in order, adding one outcome per finished scan; stops when cancelled."""
        used: set[str] = set()
        for n, scan in enumerate(found):
            if cancel is not None and cancel():
                batch.cancelled = True
                return
            name = scan.name if scan.name not in used else f"{scan.name}-{n + 1}"
            used.add(name)
            scan = replace(scan, name=name)
            scan_progress = None if progress is None else (
                lambda stage, f, n=n, label=scan.label: progress(f"{label} ({n + 1}/{len(found)}): {stage}",
                                                                 (n + f) / len(found)))
            try:
                out = self._processScan(scan, output_dir, config, scan_progress, cancel, overwrite)
            except DetectionCancelled:
                batch.cancelled = True
                return
            except Exception as exc:  # one bad scan must never stop the batch
                message = str(exc) or type(exc).__name__
                earlier = outputs.earlier_outputs(output_dir, name)
                if earlier:
                    message += f" (files from an earlier run remain: {', '.join(earlier)})"
                log.error("CMBDetector: %s failed: %s", scan.label, message)
                batch.outcomes.append(ScanOutcome(scan.label, FAILED, None, message))
            else:
                batch.outcomes.append(ScanOutcome(scan.label, OK, out.n_detections, warnings=out.warnings,
                                                  counts=out.counts))
            self._write_summary(batch)

    def _stop(self, batch: BatchResult, rest: list) -> None:
        """Mark the scans a stopped batch did not finish as "not run" and write the summary."""
        batch.cancelled = True
        for scan in rest:
            files = outputs.earlier_outputs(batch.summary_path.parent, scan.name)
            note = f" (files in the output folder under its name: {', '.join(files)})" if files else ""
            batch.outcomes.append(ScanOutcome(scan.label, NOT_RUN, None,
                                              f"the batch was stopped before this scan finished{note}"))
        self._write_summary(batch)

    @staticmethod
    def _write_summary(batch: BatchResult) -> None:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        for o in batch.outcomes:
            writer.writerow([o.file, o.status, "" if o.n_detections is None else o.n_detections, o.error,
                             " | ".join(o.warnings)] + [o.counts.get(name, "") for name in readout.SUMMARY_FIELDS])
        try:
            atomic_write_text(batch.summary_path, text.getvalue())
            batch.summary_error = ""
        except OSError as exc:  # a full disk or lost permission must not stop the batch
            batch.summary_error = f"Cannot write '{batch.summary_path}': {exc.strerror or exc}"
            log.error("CMBDetector: %s", batch.summary_error)

