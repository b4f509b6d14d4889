"""Training-set building and training of the CNN and YOLO stages (synthetic or real scans)."""
