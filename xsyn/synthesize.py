"""Make one shard of a synthetic set, whatever its method: the dispatch above the producers.

Generator methods sample the fine-tuned generator (:mod:`xsyn.synthesis.run`); TIP
composites real items (:mod:`xsyn.baselines.tip`). Both write through
:class:`xsyn.data.shards.ShardWriter`, so a complete shard folder is never rewritten
(resume after a kill redoes only the missing ones).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xsyn.data.shards import SHARD_ANNOTATIONS
from xsyn.methods import get_method

log = logging.getLogger(__name__)


def shard_complete(out_dir: str | Path) -> bool:
    return (Path(out_dir) / SHARD_ANNOTATIONS).is_file()


def synthesize_shard(cfg: Mapping[str, Any], method: str, dataset_root: str | Path,
                     generator: str | Path | None, shard_index: int, shard_count: int,
                     out_dir: str | Path, pipe: Any = None,
                     candidates: str | Path | None = None) -> dict[str, Any]:
    """Write shard ``shard_index`` of ``shard_count`` of ``method`` to ``out_dir``.

    ``candidates``: the shard's candidate regions from ``xsyn candidates`` (generator
    methods; found on the fly when not given). Returns a summary (images written, sources skipped for lack of a layout, or
    ``skipped: true`` when the shard already existed complete).
    """
    out_dir = Path(out_dir)
    if shard_complete(out_dir):
        log.info("%s: shard already complete, skipped", out_dir)
        return {"skipped": True, "out": str(out_dir)}
    recipe = get_method(method)
    syn = cfg["synthesis"]
    if not recipe.generator:
        from xsyn.baselines.tip import run_tip_shard

        return run_tip_shard(dict(cfg), Path(dataset_root), syn["source_split"], shard_index,
                             shard_count, out_dir, syn["seed"])
    if generator is None and pipe is None:
        raise ValueError(f"method {method!r} needs --generator (a generator folder)")
    from xsyn.synthesis.run import generate_shard

    return generate_shard(cfg, recipe, dataset_root, generator, shard_index, shard_count, out_dir, pipe,
                          candidates)
