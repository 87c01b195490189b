"""The box-grounded generator (DESIGN §2): GLIGEN components, tiny or pretrained, and fine-tuning."""

from xsyn.generator.factory import (
    GeneratorComponents,
    build_components,
    build_tiny_components,
    load_clip_tokenizer,
    load_generator,
    load_pretrained_components,
    pretrained_identity,
    save_generator,
    widen_conv_in,
)

__all__ = [
    "GeneratorComponents",
    "build_components",
    "build_tiny_components",
    "load_clip_tokenizer",
    "load_generator",
    "load_pretrained_components",
    "pretrained_identity",
    "save_generator",
    "widen_conv_in",
]
