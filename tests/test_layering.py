"""Dependencies point down (pyproject's import-linter contracts): models stay pure PyTorch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_models_import_without_lightning_or_hydra():
    # (wandb is left out: timm.layers itself imports it when installed)
    code = (
        "import sys, jepa.models.vit, jepa.models.predictor, jepa.checkpoints; "
        "bad = [m for m in ('lightning', 'hydra', 'omegaconf', 'webdataset') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_the_contract_catches_a_planning_module_that_imports_the_data_layer(tmp_path):
    """A copy of the package with one forbidden import added: lint-imports must fail and name it."""
    shutil.copytree(REPO / "jepa", tmp_path / "jepa", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / "jepa" / "planning" / "leak.py").write_text("import jepa.data.transforms\n")
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([exe, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0, proc.stdout
    assert "jepa.planning.leak -> jepa.data.transforms" in proc.stdout, proc.stdout
