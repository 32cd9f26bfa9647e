from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JEPA_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def vjepa2_fixture() -> dict:
    """The released-layout parity fixture; missing it is an error, never a skip."""
    path = SHARED / "fixtures" / "vjepa2_official_public.pt"
    if not path.is_file():
        raise FileNotFoundError(f"parity fixture missing: {path} (set JEPA_SHARED_DIR to the shared/ folder)")
    return torch.load(path, map_location="cpu", weights_only=True)
