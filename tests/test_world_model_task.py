"""The jointly trained world model end to end, CI-sized: trained through Hydra and Lightning on generated Two Rooms
walks, it beats its baselines offline, a planner on it beats random actions by a wide margin in closed loop, and a
resumed run ends with exactly the parameters of an uninterrupted one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from jepa.checkpoints import load_world_model
from jepa.envs.random_walk import TwoRoomsWalks
from jepa.tasks.world_model import rollout_baselines

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "launch"))
import plan as plan_launcher  # noqa: E402
import train as train_launcher  # noqa: E402

train_launcher.register_resolvers()

# a small Two Rooms version: the fixed wall, 9-frame clips, a small CNN and predictor
SMALL = [
    "+experiment=tworooms_wm",
    "logger=csv",
    "data.source.fixed_layout=true",
    "data.source.frames=9",
    "data.batch_size=32",
    "data.num_workers=0",
    "wm_encoder.channels=[8,16,16]",
    "wm_encoder.embed_dim=32",
    "wm_predictor.hidden_dim=64",
    "model.inverse_dynamics.hidden_dim=64",
    "trainer.log_every_n_steps=1",
    "~callbacks.progress",
    "trainer.enable_progress_bar=false",
]


def compose_config(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def train(run_dir: Path, steps: int, *overrides: str):
    cfg = compose_config(
        "train",
        *SMALL,
        f"trainer.max_steps={steps}",
        f"callbacks.checkpoint.every_n_train_steps={steps}",
        f"paths.output_dir={run_dir.parent}",
        f"run_name={run_dir.name}",
        *overrides,
    )
    return train_launcher.train(cfg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    run_dir = tmp_path_factory.mktemp("wm") / "small"
    # 600 steps at twice the shipped peak LR: a short run wants the larger steps (300 steps, or LR 1e-3, plan 1-2 of 6).
    # eb_jepa's time similarity (12), not the shipped 48, which this 32-d model does not meet in 600 steps (measured on
    # a 2-core CPU: with 48, CEM 2 of 6 at 27.2 px; with 12, 4 of 6 at 12.8 px; docs/findings.md)
    train(run_dir, 600, "optim.lr_schedule.peak=2e-3", "model.objective.time_similarity=12")
    return run_dir / "checkpoints" / "last.ckpt"


def test_trained_model_beats_its_baselines(trained):
    model = load_world_model(trained)
    batch = TwoRoomsWalks(frames=9, fixed_layout=True)(np.random.default_rng(123), 64)
    errors = rollout_baselines(model, torch.from_numpy(batch["frames"]), torch.from_numpy(batch["actions"]), 8)
    for step in range(8):
        assert errors["model"][step] < 0.7 * errors["repeat_last"][step], (step, errors)
        assert errors["model"][step] < 0.7 * errors["shuffled_actions"][step], (step, errors)


def test_planner_on_it_beats_random_actions(trained, tmp_path):
    common = ["env.fixed_layout=true", "episodes=6", "seed=0", "max_env_steps=200", "threads=0"]
    learned = plan_launcher.plan(
        compose_config("plan", f"checkpoint={trained}", *common, f"output_dir={tmp_path / 'cem'}")
    )
    rand = plan_launcher.plan(compose_config("plan", "policy=random", *common, f"output_dir={tmp_path / 'rand'}"))
    assert rand["successes"] == 0
    # measured on a 2-core CPU: 4 of 6, mean final distance 12.8 px against random's 36.3 px (none reached)
    assert learned["successes"] >= 3, learned["per_episode"]
    assert learned["mean_final_distance"] < 0.5 * rand["mean_final_distance"]


def test_resume_gives_the_uninterrupted_parameters(tmp_path):
    short = ["data.batch_size=8", "data.source.frames=5", "model.objective.rollout_steps=4"]
    # the interrupted run keeps the full run's schedules: it stops at step 3 of a 6-step budget
    budget = [f"optim.{s}.total_steps=6" for s in ("lr_schedule", "wd_schedule", "ema_schedule")]
    budget.append("model.objective.trajectory_variance.total_steps=6")
    straight = train(tmp_path / "straight", 6, *short).lightning_module
    train(tmp_path / "resumed", 3, *short, *budget)
    resumed = train(tmp_path / "resumed", 6, *short, *budget)  # the same command resumes from its last.ckpt
    assert resumed.global_step == 6
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.lightning_module.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
