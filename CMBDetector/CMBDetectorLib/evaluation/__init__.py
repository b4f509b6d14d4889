"""Lesion- and subject-level evaluation of the detector against known microbleeds."""
