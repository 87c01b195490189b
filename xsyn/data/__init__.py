"""Datasets: the on-disk contract, importers, the phantom simulator, splits, YOLO export,
and the shards every synthetic set is written in."""
