"""Plain-text summaries of a run and of the review, shown by the module panel and the CLI."""

from __future__ import annotations

from CMBDetectorLib.results import DetectionResult

from .markups import ReviewCounts


def counts_text(counts: ReviewCounts) -> str:
    """One line: ``Accepted 3 | Rejected 1 | Pending 5 | Reader-added 1 -> final count 4``."""
    return (f"Accepted {counts.accepted} | Rejected {counts.rejected} | Pending {counts.pending} | "
            f"Reader-added {counts.reader_added} -> final count {counts.final}")


def run_text(result: DetectionResult) -> str:
    """The scan-level call, the stage timings and any warnings of one run (the counts are
    :func:`readout.text`'s, which follows the review)."""
    lines = [scan_call_text(result)]
    if result.timings:
        total = sum(result.timings.values())
        lines.append(f"Time: {total:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()) + ")")
    lines += [f"Warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def scan_call_text(result: DetectionResult) -> str:
    """The detector's scan-level call, e.g. ``Scan-level call: microbleeds present (best score
    0.97 >= 0.90; magnitude + phase)``."""
    best = max((d.score for d in result.detections), default=None)
    verdict = "microbleeds present" if result.has_microbleeds else "no microbleed"
    best_text = "no detection" if best is None else f"best score {best:.2f}"
    inputs = "magnitude + phase" if result.used_phase else "magnitude only"
    return f"Scan-level call: {verdict} ({best_text}, call threshold {result.scan_threshold:.2f}; {inputs})"
