"""Probes end to end: an easy task is learned, released-layout and our checkpoints load, the encoder never moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from jepa.checkpoints import released_state_dict
from jepa.data.decode import encode_mp4
from jepa.data.shards import write_shards
from launch import probe as probe_launcher
from launch import train as train_launcher

REPO = Path(__file__).resolve().parents[1]

train_launcher.register_resolvers()

FAST = [
    "logger=csv",
    "~callbacks.progress",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "probe_data.num_workers=0",
    "probe_data.batch_size=8",
]
# The tiny encoder of tests/test_train.py: 4 frames at 32x32, 8x8 patches (32 tokens of 48 channels).
TINY_ENCODER = [
    "encoder.embed_dim=48",
    "encoder.depth=2",
    "encoder.num_heads=2",
    "encoder.patch_size=8",
    "encoder.num_frames=4",
    "encoder.img_size=32",
]


def colour_shards(folder: Path, num_clips: int, seed: int) -> str:
    """An easy task: the class is the dominant colour (red, green, blue) of a noisy 8-frame 32x32 clip."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(num_clips):
        label = i % 3
        video = rng.uniform(0, 120, size=(8, 32, 32, 3))
        video[..., label] += 120
        meta = {"fps": 8, "n_frames": 8, "height": 32, "width": 32, "source": "test", "label": label}
        samples.append({"__key__": f"c{i:04d}", "mp4": encode_mp4(video.astype(np.uint8), 8), "json": meta})
    write_shards(samples, str(folder / "shard-%06d.tar"), maxcount=12)
    return str(folder / "shard-*.tar")


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("colours")
    (root / "train").mkdir(), (root / "val").mkdir()
    train, val = colour_shards(root / "train", 36, seed=0), colour_shards(root / "val", 18, seed=1)
    return [
        f"probe_data.train_shards='{train}'",
        f"probe_data.val_shards='{val}'",
        "num_classes=3",
        "probe_data.frames_per_clip=4",
        "probe_data.crop_size=32",
    ]


def run_probe(run_dir: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(
            "probe", overrides=[*FAST, f"paths.output_dir={run_dir.parent}", f"run_name={run_dir.name}", *overrides]
        )
    return probe_launcher.probe(cfg)


@pytest.mark.parametrize("head", ["attentive", "linear"])
def test_random_encoder_probe_learns_an_easy_task(tmp_path, colour_data, head):
    results = run_probe(
        tmp_path / head,
        *colour_data,
        "checkpoint=null",
        "encoder=vit_micro",
        *TINY_ENCODER,
        f"probe_head={head}",
        "trainer.max_steps=40",
        "probe_optim.lr_schedule.peak=3e-3",
    )
    assert results["num_videos"] == 18 and results["steps"] == 40
    assert results["top1"] >= 90.0, results
    assert results["top5"] == 100.0  # 3 classes
    written = json.loads((tmp_path / head / "results.json").read_text())
    assert written["top1"] == results["top1"] and (tmp_path / head / "probe_head.pt").is_file()


@pytest.fixture(scope="module")
def our_checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint of ours: 2 steps of the tiny pretraining of tests/test_train.py."""
    run_dir = tmp_path_factory.mktemp("pretrain") / "tiny"
    shards = tmp_path_factory.mktemp("pretrain_shards")
    colour_shards(shards, 12, seed=2)
    overrides = [
        *train_launcher_overrides(),
        f"data.shards='{shards}/shard-*.tar'",
        "trainer.max_steps=2",
        "callbacks.checkpoint.every_n_train_steps=1",
        f"paths.output_dir={run_dir.parent}",
        f"run_name={run_dir.name}",
    ]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        train_launcher.train(compose("train", overrides=overrides))
    path = run_dir / "checkpoints" / "last.ckpt"
    assert path.is_file()
    return path


def train_launcher_overrides() -> list[str]:
    from test_train import TINY  # the tiny pretraining recipe, kept in one place

    return list(TINY)


def test_our_checkpoint_probe_keeps_encoder_bit_identical(tmp_path, colour_data, our_checkpoint, monkeypatch):
    ckpt = torch.load(our_checkpoint, map_location="cpu", weights_only=True)
    before = {k[len("target_encoder.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("target_encoder.")}
    captured = {}
    build_encoder = probe_launcher.build_encoder

    def build_and_keep(cfg):  # the real loader; keeps a handle on the encoder the probe trains against
        captured["encoder"] = build_encoder(cfg)
        return captured["encoder"]

    monkeypatch.setattr(probe_launcher, "build_encoder", build_and_keep)
    results = run_probe(tmp_path / "ours", *colour_data, f"checkpoint={our_checkpoint}", "trainer.max_steps=6")
    encoder = captured["encoder"]
    assert results["steps"] == 6 and results["num_videos"] == 18
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    after = encoder.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_released_layout_checkpoint_probe(tmp_path, colour_data, vjepa2_fixture):
    path = tmp_path / "vjepa2_small_released.pt"
    torch.save(vjepa2_fixture["checkpoint"], path)
    expected = released_state_dict(vjepa2_fixture["checkpoint"]["target_encoder"])
    cfg = vjepa2_fixture["config"]
    overrides = [o for o in colour_data if "crop_size" not in o and "frames_per_clip" not in o]
    results = run_probe(
        tmp_path / "released",
        *overrides,
        f"checkpoint={path}",
        f"probe_data.frames_per_clip={cfg['frames']}",  # the fixture's geometry
        f"probe_data.crop_size={cfg['img']}",
        f"probe_head.num_heads={cfg['heads']}",
        "trainer.max_steps=3",
    )
    assert results["encoder"].startswith(f"a custom ViT ({cfg['embed_dim']} wide, {cfg['depth']} deep")
    assert results["num_videos"] == 18
    # the probe read the EMA target encoder, and left it untouched on disk and in the file's weights
    reloaded = released_state_dict(torch.load(path, weights_only=True)["target_encoder"])
    assert all(torch.equal(expected[k], reloaded[k]) for k in expected)


def test_checkpoint_of_another_size_is_one_clear_error(tmp_path, colour_data, vjepa2_fixture):
    path = tmp_path / "released.pt"
    torch.save(vjepa2_fixture["checkpoint"], path)
    with pytest.raises(ValueError) as err:
        run_probe(tmp_path / "bad", *colour_data, f"checkpoint={path}", "encoder=vit_micro")
    message = str(err.value)
    cfg = vjepa2_fixture["config"]
    D, p, t = cfg["embed_dim"], cfg["patch_size"], cfg["tubelet_size"]
    assert f"patch_embed.proj.weight: checkpoint ({D}, 3, {t}, {p}, {p}) vs model (96, 3, 2, 16, 16)" in message
    assert f"{D} wide, {cfg['depth']} deep, patch {p}, tubelet {t}" in message


def test_random_init_needs_an_architecture(tmp_path, colour_data):
    with pytest.raises(ValueError, match="encoder=vit_small"):
        run_probe(tmp_path / "none", *colour_data, "checkpoint=null")


def test_cli_missing_checkpoint_is_one_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "launch" / "probe.py"), f"checkpoint={tmp_path}/nope.ckpt", "logger=csv"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "checkpoint not found" in proc.stderr and "nope.ckpt" in proc.stderr
    assert "Traceback" not in proc.stderr
