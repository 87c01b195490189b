"""The code a command runs, as one digest: what makes a rule re-run when its code changes.

Snakemake re-runs a job when its shell command, its inputs or its ``params`` change, but
every rule calls the same installed ``xsyn`` CLI, so an edit to the package changes none of
those. Each rule therefore carries :func:`code_fingerprint` of its command as a param: a
digest of the source of every ``xsyn`` module that command can import, found by walking the
import graph from the command's module with :mod:`ast` (imports inside functions count, so a
lazy import cannot hide a dependency). Editing ``xsyn/synthesis/car.py`` changes the
fingerprint of ``synthesize`` and re-runs synthesis and what follows, never ``phantom``,
``prepare`` or ``finetune``, whose code does not reach it.

What counts as a module's imports:

- every ``import`` / ``from … import`` of an ``xsyn`` module, at any depth of its code;
- ``from package import name`` where ``name`` is a submodule: that submodule;
- the ``__init__`` of every package on the way (Python runs them on import);
- a module that imports by name at run time (``importlib.import_module``) pulls in every
  module of its own package, since any of them may be chosen.

Bytes are hashed as they are (a comment edit counts: the file is what ran). Only ``.py``
files count: the profiles and the schema are configuration, versioned through params.
This module imports nothing heavy: the Snakefile reads it at start-up.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name  # "xsyn"

# Modules every command runs through: the entry point and the CLI that dispatches to it.
ENTRY = ("xsyn.__main__", "xsyn.cli")


def modules(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package under ``root``: dotted name → file."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _import_targets(node: ast.AST, package: str) -> list[str]:
    """Dotted names an import statement may load (``from a import b``: ``a.b`` and ``a``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def direct_imports(name: str, table: dict[str, Path], dynamic: bool = True) -> set[str]:
    """The package modules ``name`` imports itself (see the module docstring for the rules);
    ``dynamic=False`` ignores its imports by name (the CLI's: the command module is known)."""
    path = table[name]
    package = _package_of(name, path)
    tree = ast.parse(path.read_bytes(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        for target in _import_targets(node, package):
            while target and target not in table:  # `from a.b import function` → a.b
                target = target.rpartition(".")[0]
            if target:
                found.add(target)
        if dynamic and isinstance(node, ast.Attribute) and node.attr == "import_module":
            found.update(m for m in table if m.startswith(package + ".") and m.count(".") == package.count(".") + 1)
    found.discard(name)
    return found


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(starts: Iterable[str], table: dict[str, Path]) -> set[str]:
    """``starts`` and every package module they can import, their packages' ``__init__`` included.
    The entry modules (:data:`ENTRY`) are followed without their imports by name: the CLI picks
    the command's module by name, and the command is given."""
    seen: set[str] = set()
    todo = [p for s in starts for p in _with_parents(s)]
    while todo:
        name = todo.pop()
        if name in seen or name not in table:
            continue
        seen.add(name)
        for dep in direct_imports(name, table, dynamic=name not in ENTRY):
            todo.extend(_with_parents(dep))
    return seen


def fingerprint(names: Iterable[str], table: dict[str, Path]) -> str:
    """sha256 over the modules' names and bytes, in name order (independent of where the
    package lives, so a clone elsewhere gets the same digest)."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode() + b"\0" + table[name].read_bytes() + b"\0")
    return digest.hexdigest()


def command_module(command: str) -> str:
    """The module that implements ``xsyn command`` (the CLI's own table)."""
    from xsyn.cli import COMMANDS

    if command not in COMMANDS:
        raise KeyError(f"xsyn has no command {command!r} (known: {', '.join(COMMANDS)})")
    return COMMANDS[command][0]


@cache
def code_fingerprint(command: str) -> str:
    """The digest of the code ``xsyn command`` runs: what a rule passes as its ``code`` param."""
    table = modules()
    return fingerprint(closure([*ENTRY, command_module(command)], table), table)


def command_files(command: str) -> list[Path]:
    """The files :func:`code_fingerprint` hashes for ``command`` (to list them, or to test)."""
    table = modules()
    return sorted(table[m] for m in closure([*ENTRY, command_module(command)], table))
