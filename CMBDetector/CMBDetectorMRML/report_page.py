"""One-page HTML report of a reviewed scan: counts, pattern, warnings and a thumbnail of every
definite (accepted or reader-added) microbleed.

Self-contained (thumbnails are inline PNGs written with numpy + zlib, nothing Slicer lacks).
The reviewed decisions are what it reports: rejected points and spots wider than 10 mm are
listed as not counted, pending points as possible microbleeds.
"""

from __future__ import annotations

import base64
import datetime
import html
import struct
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage

from CMBDetectorLib.geometry import Geometry

from . import markups, readout, runwarnings, volumes
from .files import atomic_write_text

THUMB_MM = 32.0  # side of the axial crop around each microbleed
THUMB_PX = 128
MARKER_RGB = (255, 220, 0)
RUN_ATTRIBUTES = (("Detector threshold", "Threshold"), ("Phase image used", "UsedPhase"),
                  ("Detector's scan-level call", "ScanCall"), ("Device", "Device"))


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an ``(rows, cols, 3)`` uint8 image as PNG."""
    rows, cols, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", cols, rows, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def thumbnail(array: np.ndarray, geometry: Geometry, ras, diameter_mm: float | None) -> np.ndarray:
    """Axial plane through ``ras`` (:data:`THUMB_MM` square, :data:`THUMB_PX` pixels) sampled from
    the volume whatever its orientation, shown radiologically (anterior up, patient right on
    the left), with a ring around the microbleed."""
    offsets = (np.arange(THUMB_PX) + 0.5) * THUMB_MM / THUMB_PX - THUMB_MM / 2
    down, across = np.meshgrid(offsets, offsets, indexing="ij")
    plane = np.stack([ras[0] - across, ras[1] - down, np.full_like(down, ras[2])], -1).reshape(-1, 3)
    ijk = geometry.ras_to_ijk_points(plane)
    crop = ndimage.map_coordinates(np.asarray(array, dtype=np.float32), ijk[:, ::-1].T, order=1,
                                   mode="nearest").reshape(down.shape)
    low, high = np.percentile(crop, [1, 99.5])
    grey = np.clip((crop - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    radius = (diameter_mm or 3.0) / 2 + 1.5
    rgb[np.abs(np.hypot(across, down) - radius) < 0.3] = MARKER_RGB
    return rgb


def _table(header, body) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def _fmt(value, digits=1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def render(fiducial_node, scan_name: str | None = None) -> str:
    """The report page of ``fiducial_node`` (its referenced input volume gives the thumbnails)."""
    volume = fiducial_node.GetNodeReference(markups.VOLUME_ROLE)
    array, geometry = volumes.volume_to_array(volume) if volume is not None else (None, None)
    points = markups.points(fiducial_node)
    counts = readout.read_out(fiducial_node)
    warnings = runwarnings.load(fiducial_node)
    name = scan_name or (volume.GetName() if volume is not None else fiducial_node.GetName())
    run = [("Scan", name), ("Report date", datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))] + [
        (title, fiducial_node.GetAttribute(markups.ATTRIBUTE_PREFIX + key) or "n/a") for title, key in RUN_ATTRIBUTES]
    parts = [f"<h1>Cerebral microbleeds: {html.escape(name)}</h1>", _table(("", ""), run),
             "<h2>Counts (definite = accepted or reader-added; possible = not yet reviewed)</h2>",
             f"<p><b>{counts.definite} definite</b>, {counts.possible} possible microbleed(s); "
             f"distribution pattern of the definite ones: <b>{html.escape(counts.pattern)}</b>.</p>",
             _table(readout.CSV_COLUMNS, readout.rows(counts))]
    if warnings:
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>")
    parts.append("<h2>Definite microbleeds</h2>")
    figures = []
    for p in points:
        if readout.grade(p) != readout.DEFINITE:
            continue
        where = " ".join(str(v) for v in (p.location, getattr(p, "region", None), getattr(p, "side", None)) if v)
        caption = f"{p.label}: {_fmt(p.diameter_mm)} mm ({markups.size_class(p.diameter_mm)}), {where}, {p.source}"
        image = "" if array is None else (
            '<img alt="thumbnail" src="data:image/png;base64,'
            + base64.b64encode(png_bytes(thumbnail(array, geometry, p.ras, p.diameter_mm))).decode() + '">')
        figures.append(f'<figure class="cmb">{image}<figcaption>{html.escape(caption)}</figcaption></figure>')
    parts.append("".join(figures) or "<p>None.</p>")
    others = [(p.label, p.status, _fmt(p.diameter_mm), markups.size_class(p.diameter_mm), p.location,
               "possible" if readout.grade(p) == readout.POSSIBLE else "not counted")
              for p in points if readout.grade(p) != readout.DEFINITE]
    if others:
        parts += ["<h2>Other points</h2>",
                  _table(("label", "status", "diameter (mm)", "size class", "location", "counted as"), others)]
    style = ("body{font-family:sans-serif;max-width:900px;margin:auto}table{border-collapse:collapse;margin:6px 0}"
             "td,th{border:1px solid #999;padding:2px 6px;font-size:12px}figure.cmb{display:inline-block;"
             "margin:4px;font-size:11px;width:140px}figure.cmb img{width:128px;height:128px}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>CMBDetector report: {html.escape(name)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}<p><small>CMBDetector: research software, "
            f"not for clinical diagnosis.</small></p></body></html>\n")


def write_report(fiducial_node, path, scan_name: str | None = None) -> Path:
    """Write the report page of ``fiducial_node`` to ``path`` (atomic); returns the path."""
    atomic_write_text(path, render(fiducial_node, scan_name))
    return Path(path)
