"""Synthesis with the generator: XsynPipeline, layouts (Xsyn-M / Xsyn-A), attention capture,
CAR, BOM, and one shard of a generator method (``run``). Method names: :mod:`xsyn.methods`;
dispatch across methods: :mod:`xsyn.synthesize`; shard writing: :mod:`xsyn.data.shards`."""
