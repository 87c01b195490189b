"""Phantom dual-energy X-ray baggage simulator (DESIGN §5): scans with exact labels.

Layout: :mod:`.physics` (Beer–Lambert, noise, pseudo-colour; reusable pure functions),
:mod:`.canvas` (drawing one object, placing it), :mod:`.items` (the 12 PIDray families),
:mod:`.clutter` (benign objects and the bag), :mod:`.scene` (composition),
:mod:`.labels` (visible masks, boxes, RLE, occlusion), :mod:`.writer` (parallel,
deterministic, atomic output). CLI: ``xsyn phantom``.
"""

from xsyn.data.phantom.items import CLASSES
from xsyn.data.phantom.scene import SceneParams, render_scene
from xsyn.data.phantom.writer import generate


def params_from_config(section: dict, image_size: int | None = None) -> SceneParams:
    """The ``phantom:`` config section → :class:`SceneParams` (unknown keys are ignored)."""
    fields = SceneParams.__dataclass_fields__
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in section.items() if k in fields}
    if image_size is not None:
        kw["image_size"] = image_size
    return SceneParams(**kw)


__all__ = ["CLASSES", "SceneParams", "generate", "params_from_config", "render_scene"]
