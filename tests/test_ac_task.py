"""AC training end to end through Hydra: both losses go down, the frozen encoder stays bit-identical,
a missing encoder checkpoint is one clear error, and the offline evaluation runs on the result."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from jepa.checkpoints import load_energy_head, load_world_model
from jepa.data.trajectories import TrajectoryDataModule
from jepa.models.vit import VisionTransformer
from jepa.tasks.action import rollout_errors

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "launch"))
import eval_world_model  # noqa: E402
import plan as plan_launcher  # noqa: E402
import train as train_launcher  # noqa: E402
import train_energy_head as energy_launcher  # noqa: E402

train_launcher.register_resolvers()


def compose_config(name: str, *overrides: str):
    """The Hydra config `configs/<name>.yaml` with overrides, as the launchers see it."""
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


EMBEDDED = dict(num_train=8, num_val=4, steps=16, seed=0)
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
    dm = TrajectoryDataModule(
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
