"""Dependencies point down (pyproject's import-linter contracts): models stay pure PyTorch."""

from __future__ import annotations

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
