"""Detector experiments: build the real + synthetic YOLO mix, train ultralytics models,
predict on real test splits and score them with pycocotools (the only source of mAP)."""
