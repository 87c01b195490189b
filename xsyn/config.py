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

What a command reads: :mod:`xsyn.jobs` lists the keys of each command;
:func:`config_from_args` hands the command those keys and no others
(:class:`ConfigSection`), so the code indexes keys and never falls back on a default.
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

from xsyn.jobs import ALL, cut, leaves, reads
from xsyn.methods import METHODS, model_runs

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PROFILE_DIR: Traversable = resources.files("xsyn") / "profiles"
SCHEMA_PATH: Traversable = resources.files("xsyn") / "schemas" / "config.schema.yaml"
DEFAULT_PROFILE = "smoke"


class ConfigError(ValueError):
    """A config value is missing, mistyped or unknown; the message names the key."""


class ConfigSection(dict):
    """The part of the configuration a command was handed (nested sections alike).

    Indexing a key it does not hold raises :class:`ConfigError` naming the key and the
    reader, instead of ``KeyError``; ``get`` does the same rather than return a fallback,
    so a default restated in code can never take the place of the configured value.
    """

    def __init__(self, data: Mapping[str, Any] = (), where: str = "", reader: str = "xsyn"):
        super().__init__()
        self.where, self.reader = where, reader
        for key, value in dict(data).items():
            path = f"{where}{key}"
            self[key] = ConfigSection(value, path + ".", reader) if isinstance(value, Mapping) else value

    def __missing__(self, key: str) -> Any:
        raise ConfigError(
            f"{self.reader} reads {self.where}{key}, which is not in the configuration it was handed "
            f"(what each command reads is listed in xsyn/jobs.py; its rule passes exactly that)"
        )

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]

    def __reduce__(self):  # pickles (process pools) and deep copies as itself
        return (ConfigSection, (dict(self), self.where, self.reader))

    def plain(self) -> dict[str, Any]:
        """Plain nested dicts (for YAML dumps and records)."""
        return {k: v.plain() if isinstance(v, ConfigSection) else v for k, v in self.items()}


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
    if "detection" in cfg:
        try:
            model_runs(cfg["detection"]["models"])
        except ValueError as e:
            raise ConfigError(f"{source}: {e}") from None


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


def config_from_args(args: Any, arm: str | None = None) -> dict[str, Any]:
    """What command ``args.command`` reads (:func:`xsyn.jobs.reads`; ``arm``: the job's
    synthesis method or detector source), from its ``--config`` profiles, ``--config-json``
    fragments and ``--set`` overrides (the arguments :func:`xsyn.cli.add_config_arguments`
    defines), as a :class:`ConfigSection` holding those keys only.

    A rule passes its job's keys as ``--config-json``; every key the command reads must
    then be in those fragments, so nothing the rule left out is filled in from the smoke
    defaults without a word.
    """
    cfg = load_config(args.config, args.set, args.config_json)
    paths = reads(args.command, arm)
    reader = f"xsyn {args.command}"
    if ALL in paths:
        return cfg
    mine = cut(cfg, paths)
    if args.config_json:
        given: dict[str, Any] = {}
        for fragment in args.config_json:
            given = deep_merge(given, json.loads(fragment))
        for override in args.set:
            keys, value = parse_override(override)
            set_key(given, keys, value)
        missing = [p for p in leaves(mine) if not _holds(given, p)]
        if missing:
            raise ConfigError(
                f"{reader}: --config-json lacks {', '.join(missing[:8])}"
                f"{' …' if len(missing) > 8 else ''}: a rule passes every key its command reads "
                "(xsyn.jobs.job_config)"
            )
    return ConfigSection(mine, reader=reader)


def _holds(tree: Mapping[str, Any], path: str) -> bool:
    node: Any = tree
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
