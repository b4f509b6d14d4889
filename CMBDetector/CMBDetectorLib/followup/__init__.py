"""Longitudinal comparison of two visits: rigid registration, matching of detections and the
new / persistent / resolved call with its ARIA-H grade."""
