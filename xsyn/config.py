"""Configuration: one YAML, schema-validated, profiles layered over the smoke default.

The smoke profile holds every key with its default; other profiles (``paper``) and
command-line overrides are deep-merged over it, in the same way Snakemake merges
``--configfile`` over the Snakefile's ``configfile``.

Where defaults live: the profiles and the schema are package data
(``xsyn/profiles/*.yaml``, ``xsyn/schemas/config.schema.yaml``), read with
:mod:`importlib.resources`, so an installed ``xsyn`` loads its own config wherever it
runs. The workflow's ``config/smoke.yaml``, ``config/paper.yaml`` and
``workflow/schemas/config.schema.yaml`` are links to these files, not copies. The names of
the synthesis methods come from :data:`xsyn.methods.METHODS` (added to the schema here).
``$XSYN_CONFIG_DIR`` points profile names at another folder.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from xsyn.methods import METHODS

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PROFILE_DIR: Traversable = resources.files("xsyn") / "profiles"
SCHEMA_PATH: Traversable = resources.files("xsyn") / "schemas" / "config.schema.yaml"
DEFAULT_PROFILE = "smoke"


class ConfigError(ValueError):
    """A config value is missing, mistyped or unknown; the message names the key."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update (lists and scalars replace, mappings merge)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | os.PathLike | Traversable) -> dict[str, Any]:
    path = Path(path) if isinstance(path, str | os.PathLike) else path  # else: a package resource
    try:
        with path.open() as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def profile_path(name_or_path: str | os.PathLike) -> Path | Traversable:
    """``"paper"`` → the package's ``profiles/paper.yaml`` (or ``$XSYN_CONFIG_DIR/paper.yaml``);
    a path is returned as is."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    folder = os.environ.get("XSYN_CONFIG_DIR")
    return Path(folder) / f"{p}.yaml" if folder else PROFILE_DIR / f"{p}.yaml"


def load_schema() -> dict[str, Any]:
    """The config schema, with the method registry's names as the enum of ``synthesis.methods``."""
    schema = read_yaml(SCHEMA_PATH)
    schema["properties"]["synthesis"]["properties"]["methods"]["items"]["enum"] = list(METHODS)
    return schema


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"synthesis.car.enabled=false"`` → (["synthesis", "car", "enabled"], False)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def set_key(cfg: dict[str, Any], keys: list[str], value: Any) -> None:
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(keys)}: {k!r} is not a section")
    node[keys[-1]] = value


def validate(cfg: Mapping[str, Any], source: str = "config") -> None:
    """Validate against the JSON schema; the error names the offending key path."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors[:10]:
            where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            lines.append(f"  {where}: {e.message}")
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(lines))


def load_config(
    profiles: Iterable[str | os.PathLike] = (),
    overrides: Iterable[str] = (),
    json_overrides: Iterable[str] = (),
) -> dict[str, Any]:
    """Smoke defaults ← each profile file ← JSON fragments ← ``key=value`` overrides."""
    cfg = read_yaml(profile_path(DEFAULT_PROFILE))
    sources = [str(profile_path(DEFAULT_PROFILE))]
    for prof in profiles:
        path = profile_path(prof)
        cfg = deep_merge(cfg, read_yaml(path))
        sources.append(str(path))
    for fragment in json_overrides:
        try:
            cfg = deep_merge(cfg, json.loads(fragment))
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config-json: malformed JSON: {e}") from None
    for item in overrides:
        keys, value = parse_override(item)
        set_key(cfg, keys, value)
    validate(cfg, " + ".join(sources))
    return cfg


def config_from_args(args: Any) -> dict[str, Any]:
    """A command's config from its ``--config`` profiles, ``--config-json`` fragments and
    ``--set`` overrides (the arguments :func:`xsyn.cli.add_config_arguments` defines)."""
    return load_config(args.config, args.set, args.config_json)


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
