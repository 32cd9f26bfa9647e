"""Unreadable and non-finite checkpoints: one message naming the file and what it holds, from every loader and
launcher, never torch's advice to load with `weights_only=False`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from jepa.checkpoint_io import CheckpointError, read_checkpoint
from jepa.checkpoints import load_encoder, load_energy_head, load_released_vjepa2, load_world_model
from jepa.models.vit import VisionTransformer

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def our_checkpoint(path, nan: bool = False) -> None:
    torch.manual_seed(0)
    encoder = VisionTransformer(img_size=32, patch_size=8, num_frames=4, embed_dim=48, depth=2, num_heads=2)
    state = {f"target_encoder.{k}": v.clone() for k, v in encoder.state_dict().items()}
    if nan:
        for value in state.values():
            if value.is_floating_point():
                value.fill_(float("nan"))
    torch.save({"state_dict": state, "module_kwargs": {"encoder": encoder.init_kwargs}}, path)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """name -> (path, what the message must say the file holds)."""
    folder = tmp_path_factory.mktemp("bad_ckpts")
    good = folder / "good.ckpt"
    our_checkpoint(good)
    files = {
        "empty": (b"", "an empty file (0 bytes)"),
        "random": (os.urandom(4096), "4096 bytes of binary data that are not a torch checkpoint"),
        "text": (b"step,loss\n1,0.5\n", "text (16 bytes, starting 'step,loss')"),
        "truncated": (good.read_bytes()[: good.stat().st_size // 2], "a truncated or damaged torch.save archive"),
    }
    out = {}
    for name, (data, holds) in files.items():
        path = folder / f"{name}.ckpt"
        path.write_bytes(data)
        out[name] = (str(path), holds)
    return out


@pytest.mark.parametrize("name", ["empty", "random", "text", "truncated"])
@pytest.mark.parametrize(
    "loader", [load_encoder, load_world_model, load_energy_head, load_released_vjepa2, read_checkpoint]
)
def test_unreadable_file_is_named_with_what_it_holds(bad_files, name, loader):
    path, holds = bad_files[name]
    with pytest.raises(CheckpointError) as err:
        loader(path)
    message = str(err.value)
    assert message.startswith(f"{path} is not a readable checkpoint: it is ") and holds in message, message
    assert "weights_only" not in message


def test_pickled_objects_and_non_dicts_are_named(tmp_path):
    path = tmp_path / "config.ckpt"
    torch.save({"cfg": OmegaConf.create({"a": 1})}, path)
    with pytest.raises(CheckpointError, match=r"config\.ckpt holds Python objects .* omegaconf\..*DictConfig"):
        load_encoder(path)
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match=r"tensor\.pt holds a Tensor, not a checkpoint"):
        load_encoder(path)
    with pytest.raises(FileNotFoundError, match="is a folder, not a checkpoint file"):
        load_encoder(tmp_path)


def test_non_finite_weights_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "diverged.ckpt"
    our_checkpoint(path, nan=True)
    with pytest.raises(CheckpointError) as err:
        load_encoder(path)
    message = str(err.value)
    assert message.startswith(f"{path} (target_encoder encoder) holds non-finite weights: ")
    total = sum(p.numel() for p in VisionTransformer(img_size=32, patch_size=8, num_frames=4, embed_dim=48,
                                                     depth=2, num_heads=2).parameters())  # fmt: skip
    assert f"{total:,} of {total:,} values are NaN or inf" in message


def launcher(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [sys.executable, str(REPO / "launch" / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=180)


def test_launchers_report_a_bad_checkpoint_in_one_line(tmp_path, bad_files):
    text, holds = bad_files["text"]
    truncated, _ = bad_files["truncated"]
    runs = {
        "train ckpt_path=": launcher(
            "train.py", "+experiment=cpu_quick", f"ckpt_path={truncated}", f"paths.output_dir={tmp_path}"
        ),
        "probe checkpoint=": launcher("probe.py", f"checkpoint={text}", f"paths.output_dir={tmp_path}"),
        "plan checkpoint=": launcher("plan.py", f"checkpoint={bad_files['random'][0]}", f"output_dir={tmp_path}/p"),
    }
    for what, proc in runs.items():
        assert proc.returncode == 2, (what, proc.stderr[-2000:])
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "is not a readable checkpoint: it is" in errors[0], (what, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and "weights_only" not in proc.stderr, what
    assert holds in runs["probe checkpoint="].stderr


def test_corrupt_last_ckpt_of_a_run_says_how_to_go_on(tmp_path, bad_files):
    run_dir = tmp_path / "broken"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    our_checkpoint(run_dir / "checkpoints" / "step00000100.ckpt")
    proc = launcher("train.py", "+experiment=cpu_quick", f"paths.output_dir={tmp_path}", "run_name=broken")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        "cannot resume: " in proc.stderr
        and "last.ckpt is not a readable checkpoint: it is an empty file" in proc.stderr
    )
    assert f"ckpt_path={run_dir / 'checkpoints' / 'step00000100.ckpt'}" in proc.stderr
