"""V-JEPA 2.1 objective end to end: a tiny CPU run on generated shards mixing image and video batches learns, resumes
exactly, and the task handles a hand-built image batch (T == 1) through the image tokenizer."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from jepa.checkpoints import load_encoder
from jepa.data.synthetic import make_synthetic_shards
from jepa.losses import ContextLossRamp, context_distances
from jepa.masks import MaskCollator
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer
from jepa.tasks.pretrain import PretrainTask
from launch import train as train_launcher

REPO = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(REPO / "tests"))
import test_train  # noqa: E402

train_launcher.register_resolvers()

# test_train's tiny model (4 frames at 32x32, 8x8 patches: 2x4x4 = 32 tokens; images 1x4x4) with the 2.1 objective
# and 2 taps.
TINY = ["+experiment=vjepa2_1_cpu_quick" if o.startswith("+experiment=") else o for o in test_train.TINY] + [
    "encoder.taps=[0,1]"
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("shards21")
    make_synthetic_shards(out, num_clips=32, frames=8, size=32, clips_per_shard=8, progress=False)
    return str(out / "shard-{000000..000003}.tar")


def compose_cfg(run_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(
            "train", overrides=[*TINY, f"paths.output_dir={run_dir.parent}", f"run_name={run_dir.name}", *overrides]
        )


def run(run_dir: Path, shards: str, *overrides: str):
    data = [f"data.datasets.0.shards='{shards}'", f"data.datasets.1.shards='{shards}'"]
    return train_launcher.train(compose_cfg(run_dir, *data, *overrides))


def metrics(run_dir: Path, key: str = "train/loss") -> dict[int, float]:
    """step -> `key` from the CSV log (steps counted from 1)."""
    out = {}
    with open(run_dir / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get(key):
                out[int(row["step"]) + 1] = float(row[key])
    return out


def test_loss_goes_down_with_images_and_videos(tmp_path, shards):
    run_dir = tmp_path / "down"
    run(run_dir, shards, "trainer.max_steps=60", "trainer.log_every_n_steps=1", "data.steps_per_epoch=10")
    curve, masked = metrics(run_dir), metrics(run_dir, "train/loss_masked")
    context, weight = metrics(run_dir, "train/loss_context"), metrics(run_dir, "train/context_weight")
    assert len(curve) == 60

    def mean(values: dict[int, float], steps: range) -> float:
        return sum(values[s] for s in steps) / len(steps)

    first, last = range(1, 11), range(51, 61)
    # 4 levels and a quarter image batches: the masked loss falls more slowly than V-JEPA 2's in test_train.py
    assert mean(masked, last) < 0.93 * mean(masked, first), (mean(masked, first), mean(masked, last))
    assert mean(context, last) < 0.8 * mean(context, first), (mean(context, first), mean(context, last))
    assert mean(curve, last) < 0.9 * mean(curve, range(7, 17))  # the total, once lambda is constant
    # the ramp: 0 until 5% of 60 steps, 0.5 from 10% on; the total adds lambda * context loss
    assert weight[1] == 0.0 and weight[60] == 0.5
    # bf16 on CPUs with native bf16 (jepa.hardware): the logged total is rounded to bf16 (8 significant bits)
    assert curve[60] == pytest.approx(masked[60] + 0.5 * context[60], rel=2**-7)
    enc = load_encoder(run_dir / "checkpoints" / "last.ckpt")
    assert enc.taps == [0, 1] and not enc.training
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 4, 32, 32), all_levels=True).shape == (1, 32, 96)
        assert enc(torch.randn(1, 3, 1, 32, 32)).shape == (1, 16, 48)


def test_resume_gives_same_losses(tmp_path, shards):
    common = ["trainer.log_every_n_steps=1", "data.steps_per_epoch=4", "callbacks.checkpoint.every_n_train_steps=4"]
    budget = [f"optim.{s}.total_steps=12" for s in ("lr_schedule", "wd_schedule", "ema_schedule")]
    budget.append("model.context_loss_weight.total_steps=12")
    straight = tmp_path / "straight"
    run(straight, shards, *common, "trainer.max_steps=12")
    interrupted = tmp_path / "interrupted"
    run(interrupted, shards, *common, *budget, "trainer.max_steps=8")
    trainer = run(interrupted, shards, *common, *budget, "trainer.max_steps=12")
    assert trainer.global_step == 12
    a, b = metrics(straight), metrics(interrupted)
    for step in range(9, 13):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    wa = load_encoder(straight / "checkpoints" / "last.ckpt").state_dict()
    wb = load_encoder(interrupted / "checkpoints" / "last.ckpt").state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def tiny_task(**task_kwargs) -> PretrainTask:
    torch.manual_seed(0)
    geometry = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, tiled_rope=False)
    encoder = VisionTransformer(
        **geometry, embed_dim=48, depth=2, num_heads=2, taps=[0, 1], img_temporal_dim_size=1, modality_embedding=True
    )
    predictor = VisionTransformerPredictor(
        **geometry,
        embed_dim=48,
        predictor_embed_dim=32,
        depth=1,
        num_heads=2,
        num_levels=2,
        return_all_tokens=True,
        modality_embedding=True,
    )
    return PretrainTask(encoder, predictor, None, lambda s: 0.0, lambda s: 0.0, lambda s: 0.99, **task_kwargs)


def test_image_batch_takes_the_image_tokenizer_and_modality_vectors():
    task = tiny_task(context_loss_weight=ContextLossRamp(0.5, 100, 0.0, 0.0))
    generator = torch.Generator().manual_seed(0)
    batch = {
        "video": torch.randn(3, 3, 1, 32, 32),
        **MaskCollator(crop_size=32, patch_size=8)(3, generator, num_frames=1),
    }
    assert batch["ctx_idx"][0].max() < 16  # a (1, 4, 4) grid
    loss, logged = task.loss_and_metrics(batch)
    loss.backward()
    enc, pred = task.encoder, task.predictor
    # images train the image patch embedding and the image vectors, not the video ones
    assert enc.patch_embed_img.proj.weight.grad.abs().sum() > 0 and enc.patch_embed.proj.weight.grad is None
    assert enc.img_mod_embed.grad.abs().sum() > 0 and enc.video_mod_embed.grad is None
    assert pred.img_mod_embed.grad.abs().sum() > 0 and pred.video_mod_embed.grad is None
    assert pred.predictor_proj_context.weight.grad.abs().sum() > 0  # the dense loss reaches the context head
    assert logged["train/context_weight"] == 0.5


def test_image_lambda_and_unweighted_context_loss():
    generator = torch.Generator().manual_seed(0)
    image = {
        "video": torch.randn(2, 3, 1, 32, 32),
        **MaskCollator(crop_size=32, patch_size=8)(2, generator, num_frames=1),
    }
    # 8x8 tokens per frame, so that some visible tokens lie farther than 1 from the masked ones
    video = {
        "video": torch.randn(2, 3, 4, 64, 64),
        **MaskCollator(crop_size=64, patch_size=8)(2, generator, num_frames=4),
    }
    assert context_distances(video["ctx_idx"][1], video["tgt_idx"][1], (2, 8, 8)).max() > 1
    task = tiny_task(
        context_loss_weight=ContextLossRamp(0.5, 100, 0.0, 0.0),
        image_context_loss_weight=ContextLossRamp(0.7, 100, 0.0, 0.0),
    )
    assert task.loss_and_metrics(image)[1]["train/context_weight"] == 0.7
    assert task.loss_and_metrics(video)[1]["train/context_weight"] == 0.5
    weighted = task.loss_and_metrics(video)[1]["train/loss_context"]
    task.distance_weighting = False
    # weights 1/sqrt(d) <= 1 with d >= 1, so the unweighted mean is larger
    assert task.loss_and_metrics(video)[1]["train/loss_context"] > weighted


def test_v2_objective_is_unchanged_by_default():
    """No context loss configured: the V-JEPA 2 metrics only, and the loss is the masked L1 alone."""
    task = tiny_task()
    generator = torch.Generator().manual_seed(0)
    batch = {
        "video": torch.randn(2, 3, 4, 32, 32),
        **MaskCollator(crop_size=32, patch_size=8)(2, generator, num_frames=4),
    }
    _, logged = task.loss_and_metrics(batch)
    assert set(logged) == {"train/loss", "train/masked_fraction", "train/target_std"}


def test_mismatched_levels_is_one_clear_error():
    encoder = VisionTransformer(
        img_size=32, patch_size=8, num_frames=4, embed_dim=48, depth=2, num_heads=2, taps=[0, 1]
    )
    predictor = VisionTransformerPredictor(
        img_size=32, patch_size=8, num_frames=4, embed_dim=48, predictor_embed_dim=32
    )
    with pytest.raises(ValueError, match="num_levels=2"):
        PretrainTask(encoder, predictor, None, lambda s: 0.0, lambda s: 0.0, lambda s: 0.99)
    with pytest.raises(ValueError, match="return_all_tokens"):
        PretrainTask(
            encoder,
            VisionTransformerPredictor(
                img_size=32, patch_size=8, num_frames=4, embed_dim=48, predictor_embed_dim=32, num_levels=2
            ),
            None,
            lambda s: 0.0,
            lambda s: 0.0,
            lambda s: 0.99,
            context_loss_weight=ContextLossRamp(0.5, 10),
        )


def test_vjepa2_1_small_config_builds(tmp_path):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=vjepa2_1_small", f"paths.output_dir={tmp_path}"])
    assert cfg.run_name == "vjepa2_1_small"
    with torch.device("meta"):
        task = instantiate(cfg.model, _convert_="all")
    assert task.encoder.taps == [2, 5, 8, 11] and task.predictor.out_dim == 4 * 384
    assert task.context_loss_weight(499) == 0.0 and task.context_loss_weight(1000) == 0.5
