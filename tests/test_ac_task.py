"""AC training end to end through Hydra: both losses go down, the frozen encoder stays bit-identical,
a missing encoder checkpoint is one clear error, and the offline evaluation runs on the result."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from jepa.checkpoints import load_energy_head, load_world_model
from jepa.data.shards import write_shards
from jepa.data.trajectory_shards import trajectory_sample
from jepa.envs.recorders import TwoRoomsDataModule
from jepa.models.ac_predictor import ACWorldModel, VisionTransformerPredictorAC
from jepa.models.vit import VisionTransformer
from jepa.tasks.action import rollout_errors
from launch import eval_world_model
from launch import plan as plan_launcher
from launch import train as train_launcher
from launch import train_energy_head as energy_launcher

REPO = Path(__file__).resolve().parents[1]

train_launcher.register_resolvers()


def compose_config(name: str, *overrides: str):
    """The Hydra config `configs/<name>.yaml` with overrides, as the launchers see it."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


EMBEDDED = dict(num_train=8, num_val=4, steps=16, seed=0)
WORLD_MODEL_STEPS = 200
TINY = [
    "+experiment=tworooms_ac",
    "model.residual=false",
    "logger=csv",
    "encoder.embed_dim=48",
    "encoder.depth=2",
    "encoder.num_heads=2",
    "encoder.img_size=32",
    "ac_predictor.predictor_embed_dim=48",
    "ac_predictor.depth=2",
    "ac_predictor.num_heads=2",
    "data.batch_size=4",
    "data.frames_per_clip=4",
    # the curriculum of the experiment, shrunk: 3-frame windows with 1-step rollouts, then 4 frames with 3 steps
    "model.train_frames.values=[3,4]",
    "model.train_frames.milestones=[0,0.5]",
    "model.auto_steps.values=[1,3]",
    "model.auto_steps.milestones=[0,0.5]",
    "data.num_workers=0",
    "trainer.max_steps=40",
    "trainer.log_every_n_steps=1",
    "callbacks.checkpoint.every_n_train_steps=40",
    "~callbacks.progress",
    "trainer.enable_progress_bar=false",
    *[f"data.embedded.{k}={v}" for k, v in EMBEDDED.items()],
]


@pytest.fixture(scope="module")
def encoder_ckpt(tmp_path_factory) -> Path:
    """A pretrained-encoder checkpoint in our Lightning layout (target encoder + its constructor kwargs)."""
    torch.manual_seed(0)
    encoder = VisionTransformer(img_size=32, patch_size=8, num_frames=4, embed_dim=48, depth=2, num_heads=2)
    path = tmp_path_factory.mktemp("enc") / "pretrain.ckpt"
    state = {f"target_encoder.{k}": v for k, v in encoder.state_dict().items()}
    torch.save({"state_dict": state, "module_kwargs": {"encoder": encoder.init_kwargs}}, path)
    return path


def run(run_dir: Path, data_dir: Path, *overrides: str):
    cfg = compose_config(
        "train",
        *TINY,
        f"paths.output_dir={run_dir.parent}",
        f"run_name={run_dir.name}",
        f"data.embedded_dir={data_dir}",
        *overrides,
    )
    return train_launcher.train(cfg)


def mean_of(rows: list[dict], key: str) -> float:
    values = [float(r[key]) for r in rows if r.get(key)]
    return sum(values) / len(values)


def test_ac_training_lowers_losses_and_keeps_encoder(tmp_path, encoder_ckpt):
    trainer = run(tmp_path / "ac", tmp_path / "data", f"model.encoder_checkpoint={encoder_ckpt}")
    task = trainer.lightning_module
    saved = torch.load(encoder_ckpt, weights_only=True)["state_dict"]
    for k, v in task.encoder.state_dict().items():
        assert torch.equal(v, saved[f"target_encoder.{k}"]), k
    assert not any(p.requires_grad for p in task.encoder.parameters())

    with open(tmp_path / "ac" / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    rollout_steps = [float(r["train/rollout_steps"]) for r in rows if r.get("train/rollout_steps")]
    assert rollout_steps[:10] == [1.0] * 10 and rollout_steps[-10:] == [3.0] * 10
    for key in ("train/loss_tf", "train/loss_rollout"):
        logged = [r for r in rows if r.get(key)]
        first, last = mean_of(logged[:5], key), mean_of(logged[-5:], key)
        assert last < 0.8 * first, (key, first, last)

    # the saved AC checkpoint rebuilds the world model, with the same frozen encoder, for offline evaluation
    wm = load_world_model(tmp_path / "ac" / "checkpoints" / "last.ckpt")
    for k, v in wm.encoder.state_dict().items():
        assert torch.equal(v, saved[f"target_encoder.{k}"]), k
    dm = TwoRoomsDataModule(
        embedded_dir=str(tmp_path / "data"),
        embedded=EMBEDDED,
        split="val",
        batch_size=4,
        num_workers=0,
        frames_per_clip=4,
        frame_step=2,
        crop_size=32,
    )
    dm.setup()
    errors = rollout_errors(wm, dm.train_dataloader(), horizon=3, num_windows=8)
    assert errors["windows"] == 8
    assert all(len(errors[k]) == 3 for k in ("model", "shuffled_actions", "repeat_last"))
    assert all(len(errors[k]) == 3 and min(errors[k]) > 0 for k in ("se_model_vs_shuffled", "se_model_vs_repeat"))
    # learned beats random: the same predictor at its initialisation is further off at every rollout step
    fresh = VisionTransformerPredictorAC(**wm.predictor.init_kwargs).eval()
    untrained = ACWorldModel(wm.encoder, fresh, wm.integrate_states, wm.residual)
    random_errors = rollout_errors(untrained, dm.train_dataloader(), horizon=3, num_windows=8)
    assert all(a < 0.8 * b for a, b in zip(errors["model"], random_errors["model"], strict=True)), (
        errors,
        random_errors,
    )

    # the CLI's evaluation writes the JSON and the plot
    cfg = compose_config(
        "eval_world_model",
        f"checkpoint={tmp_path / 'ac' / 'checkpoints' / 'last.ckpt'}",
        f"data.embedded_dir={tmp_path / 'data'}",
        *[f"data.embedded.{k}={v}" for k, v in EMBEDDED.items()],
        "horizon=3",
        "num_windows=8",
        f"output_dir={tmp_path / 'eval'}",
    )
    result = eval_world_model.evaluate(cfg)
    assert json.loads((tmp_path / "eval" / "errors.json").read_text())["model"] == result["model"]
    assert (tmp_path / "eval" / "errors.png").stat().st_size > 1000

    # latent MPC with it (the frozen V-JEPA 2-AC route's planning config): JSON results, an image strip per
    # episode, the energy landscape; then through a planning-energy head; then toward an image file
    def plan(*overrides: str) -> dict:
        small = [
            "planner.samples=16",
            "planner.elites=4",
            "planner.iterations=2",
            "planner.horizon=2",
            "planner.straight_lines=4",
        ]
        ckpt = tmp_path / "ac" / "checkpoints" / "last.ckpt"
        cfg = compose_config("plan_tworooms_ac", f"checkpoint={ckpt}", "seed=0", *small, *overrides)
        return plan_launcher.plan(cfg)

    raw = ["energy=latent", "energy.p=1"]
    summary = plan(
        *raw,
        "episodes=2",
        "max_env_steps=8",
        "energy_landscape=true",
        "save_strips=true",
        f"output_dir={tmp_path / 'plan'}",
    )
    saved = json.loads((tmp_path / "plan" / "results.json").read_text())
    assert saved["episodes"] == 2 and saved["seeds"] == [0, 1] and saved["seconds_per_plan"] > 0
    low, high = saved["success_interval_95"]
    assert low <= saved["success_rate"] <= high
    assert saved["success_rate"] == sum(row["success"] for row in saved["per_episode"]) / 2
    assert [row["env_steps"] for row in saved["per_episode"]] == [8, 8]
    assert [row["plans"] for row in saved["per_episode"]] == [2, 2]  # 4 environment steps per planned action
    assert summary["mean_final_distance"] == saved["mean_final_distance"]
    for name in ("episode000.png", "episode001.png", "energy_landscape.png"):
        assert (tmp_path / "plan" / name).stat().st_size > 500, name
    # a planning-energy head on the AC model's frozen encoder (fixed-wall windows, cached), then planning through it
    cfg = compose_config(
        "energy_head",
        f"checkpoint={tmp_path / 'ac' / 'checkpoints' / 'last.ckpt'}",
        f"data.embedded_dir={tmp_path / 'data_fixed'}",
        *[f"data.embedded.{k}={v}" for k, v in EMBEDDED.items()],
        "data.frames_per_clip=4",
        "data.frame_step=2",
        "num_windows=8",
        "steps=20",
        "batch_size=4",
        "head.hidden_dim=32",
        "head.out_dim=8",
        # the shipped head also reads the AC model's own rollouts: 3 steps from each window's first frame here
        "prediction_starts=[0]",
        "prediction_horizon=3",
        f"output_dir={tmp_path / 'energy'}",
    )
    energy_launcher.run(cfg)
    head = load_energy_head(tmp_path / "energy" / "energy_head.ckpt")
    assert head.num_tokens == 16 and head.embed_dim == 48  # 32 px frames, 8 px patches, the tiny encoder's width
    summary = plan(
        "episodes=1",
        "max_env_steps=8",
        f"energy.head.path_or_checkpoint={tmp_path / 'energy' / 'energy_head.ckpt'}",
        f"output_dir={tmp_path / 'plan_head'}",
    )
    assert summary["energy"]["head"]["path_or_checkpoint"].endswith("energy_head.ckpt")
    assert summary["per_episode"][0]["plans"] == 2

    import matplotlib.image

    from jepa.envs.two_rooms import TwoRoomsEnv

    matplotlib.image.imsave(tmp_path / "goal.png", TwoRoomsEnv().reset(seed=5)[1]["goal_image"])
    summary = plan(
        *raw, "episodes=1", "max_env_steps=4", f"goal_image={tmp_path / 'goal.png'}", f"output_dir={tmp_path / 'f'}"
    )
    assert "success_rate" not in summary and summary["per_episode"][0]["env_steps"] == 4


def test_energy_head_on_rollouts_needs_an_ac_checkpoint(tmp_path, encoder_ckpt):
    cfg = compose_config("energy_head", f"checkpoint={encoder_ckpt}", f"output_dir={tmp_path / 'energy'}")
    with pytest.raises(ValueError, match=r"pretraining checkpoint: pass an AC checkpoint.*prediction_coeff=0"):
        energy_launcher.run(cfg)


def test_curriculum_longer_than_the_windows_is_one_clear_error(tmp_path, encoder_ckpt):
    overrides = [f"model.encoder_checkpoint={encoder_ckpt}", "model.train_frames.values=[3,6]", "trainer.max_steps=4"]
    with pytest.raises(ValueError, match=r"train_frames=6 needs windows of at least 6 frames.*frames_per_clip to 6"):
        run(tmp_path / "ac", tmp_path / "data", *overrides)


def brightness_episodes(num: int, seed: int, steps: int = 16, size: int = 16):
    """Trajectory samples of a world whose state is the frame's gray level and whose action changes it (+-12)."""
    rng = np.random.default_rng(seed)
    for i in range(num):
        actions = rng.uniform(-12, 12, steps).astype(np.float32)
        states = np.empty(steps, np.float32)
        states[0] = rng.uniform(60, 190)
        for t in range(1, steps):
            states[t] = np.clip(states[t - 1] + actions[t - 1], 30, 225)
            actions[t - 1] = states[t] - states[t - 1]  # what the clipped action did
        frames = np.broadcast_to(states.round().astype(np.uint8)[:, None, None, None], (steps, size, size, 3))
        yield trajectory_sample(f"ep{i:05d}", frames.copy(), actions[:, None], states[:, None], lossless=True)


def test_trained_world_model_beats_its_baselines(tmp_path):
    """A tiny AC model, briefly trained, predicts the next latent better than "repeat the last latent" and than
    itself with another window's actions: it uses the actions (the evaluation of launch/eval_world_model.py)."""
    for split, num, seed in (("train", 64, 0), ("val", 64, 1)):
        write_shards(brightness_episodes(num, seed), str(tmp_path / split / "shard-%06d.tar"), 32)
    torch.manual_seed(0)
    encoder = VisionTransformer(img_size=16, patch_size=8, num_frames=4, embed_dim=48, depth=2, num_heads=2)
    state = {f"target_encoder.{k}": v for k, v in encoder.state_dict().items()}
    torch.save({"state_dict": state, "module_kwargs": {"encoder": encoder.init_kwargs}}, tmp_path / "enc.ckpt")
    overrides = [
        "+experiment=tworooms_ac", "logger=csv", "~callbacks.progress", "trainer.enable_progress_bar=false",
        "encoder.embed_dim=48", "encoder.depth=2", "encoder.num_heads=2", "ac_predictor.predictor_embed_dim=48",
        "ac_predictor.num_heads=2", "data.frames_per_clip=4", "data.num_workers=0", "trainer.log_every_n_steps=5",
        "data=trajectories", f"data.shards='{tmp_path}/train/shard-*.tar'", "data.frame_step=1", "data.crop_size=16",
        "encoder.img_size=16", "ac_predictor.depth=1", "ac_predictor.action_dim=1", "ac_predictor.state_dim=1",
        "ac_predictor.action_scale=10", "ac_predictor.state_offset=128", "ac_predictor.state_scale=64",
        "model.residual=true", "model.zero_init_residual=true", "model.train_frames=null", "model.auto_steps=2",
        "data.batch_size=16",
        "optim.lr_schedule.peak=3e-3", "optim.lr_schedule.start=3e-4", "optim.lr_schedule.final=3e-4",
        f"trainer.max_steps={WORLD_MODEL_STEPS}", f"callbacks.checkpoint.every_n_train_steps={WORLD_MODEL_STEPS}",
        f"model.encoder_checkpoint={tmp_path / 'enc.ckpt'}", f"paths.output_dir={tmp_path}", "run_name=wm",
    ]  # fmt: skip
    train_launcher.train(compose_config("train", *overrides))
    cfg = compose_config(
        "eval_world_model",
        f"checkpoint={tmp_path / 'wm' / 'checkpoints' / 'last.ckpt'}",
        "data=trajectories",
        f"data.shards='{tmp_path}/val/shard-*.tar'",
        "data.frame_step=1",
        "data.batch_size=8",
        "data.num_workers=0",
        "horizon=1",
        "num_windows=128",
        f"output_dir={tmp_path / 'eval'}",
    )
    errors = eval_world_model.evaluate(cfg)
    model, shuffled, repeat = errors["model"][0], errors["shuffled_actions"][0], errors["repeat_last"][0]
    # clearly below both, by more than twice the standard error of the paired difference
    assert shuffled - model > 2 * errors["se_model_vs_shuffled"][0], errors
    assert repeat - model > 2 * errors["se_model_vs_repeat"][0], errors
