"""Synthesis: XsynPipeline, layouts (Xsyn-M / Xsyn-A), attention capture, CAR, BOM, shards."""
