"""Datasets: the on-disk contract, importers, the phantom simulator, splits, YOLO export."""
