"""An installed xsyn carries its own config: ``pip install .`` into a fresh virtual environment
outside the checkout, then ``xsyn config`` (run elsewhere) prints the smoke profile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def tracked(*prefixes: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *prefixes],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return [f for f in out.stdout.splitlines() if (REPO / f).is_file()]


@pytest.mark.slow
def test_pip_install_outside_the_checkout_loads_its_own_config(tmp_path):
    src = tmp_path / "src"  # what a source distribution holds: no workflow, no config/ links
    for rel in tracked("pyproject.toml", "README.md", "xsyn"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # Offline: pip, setuptools and the dependencies come from this environment's site-packages,
    # listed after the new environment's own (a .pth path line; its editable xsyn is not loaded).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XSYN_CONFIG_DIR")}
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                              "--no-index", "--ignore-installed", "--quiet", str(src)],
                             cwd=tmp_path, env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    shutil.rmtree(src)  # nothing may be read from a checkout any more
    where = subprocess.run([str(python), "-c", "import xsyn; print(xsyn.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), where
    out = subprocess.run([str(venv / "bin" / "xsyn"), "config"], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert yaml.safe_load(out.stdout) == yaml.safe_load((REPO / "xsyn/profiles/smoke.yaml").read_text())
    paper = subprocess.run([str(venv / "bin" / "xsyn"), "config", "--config", "paper"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert paper.returncode == 0 and yaml.safe_load(paper.stdout)["profile"] == "paper", paper.stderr[-2000:]
