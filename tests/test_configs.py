"""Every experiment composes, resolves and builds; the CLI shows the config and rejects unknown names clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from launch import train as train_launcher

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))

train_launcher.register_resolvers()


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_resolves(experiment):
    cfg = compose_train(f"+experiment={experiment}", "paths.output_dir=/tmp/jepa-test-outputs")
    OmegaConf.resolve(cfg)
    if cfg.model._target_.endswith("JointWorldModelTask"):
        # trained end to end from pixels: the data's clips are the rollouts the objective trains on, after the
        # frames the first latent sees; the encoder takes that many frames stacked on its channels
        context = cfg.model.world_model.context_frames
        frames = cfg.data.source.frames if "source" in cfg.data else cfg.data.frames_per_clip
        assert frames >= context - 1 + cfg.model.objective.rollout_steps + 1
        assert cfg.wm_encoder.get("in_chans", 3) == 3 * context
        assert cfg.optim.lr_schedule.total_steps == cfg.trainer.max_steps
        return
    assert cfg.encoder.embed_dim % cfg.encoder.num_heads == 0
    assert cfg.predictor.embed_dim == cfg.encoder.embed_dim
    if cfg.model._target_.endswith("ActionConditionedTask"):
        # frames are encoded one at a time: the windows only need the frames the curriculum trains on
        longest = max(cfg.model.train_frames["values"]) if cfg.model.get("train_frames") else 2
        assert cfg.data.frames_per_clip >= longest
    else:
        assert cfg.data.frames_per_clip == cfg.encoder.num_frames == cfg.mask.num_frames
    assert cfg.optim.lr_schedule.total_steps == cfg.trainer.max_steps


@pytest.mark.parametrize("experiment", ["cpu_quick"])
def test_experiment_instantiates(experiment):
    cfg = compose_train(f"+experiment={experiment}")
    task = instantiate(cfg.model, _convert_="all")
    assert task.encoder.init_kwargs["num_frames"] == cfg.encoder.num_frames
    mask = instantiate(cfg.mask, _convert_="all")
    assert mask.grid == (cfg.encoder.num_frames // 2, cfg.encoder.img_size // 16, cfg.encoder.img_size // 16)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, str(REPO / "launch" / "train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_cfg_job_prints_vit_small_16_frames():
    proc = run_cli("+experiment=vjepa2_small", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.encoder._target_ == "jepa.models.vit.VisionTransformer"
    assert (cfg.encoder.embed_dim, cfg.encoder.depth, cfg.encoder.num_heads) == (384, 12, 6)
    assert (cfg.encoder.patch_size, cfg.encoder.num_frames, cfg.encoder.img_size) == (16, 16, 256)
    assert (cfg.predictor.predictor_embed_dim, cfg.predictor.depth, cfg.predictor.num_heads) == (384, 12, 12)
    assert cfg.predictor.num_mask_tokens == 10


def test_unknown_experiment_lists_valid_names():
    proc = run_cli("+experiment=does_not_exist")
    assert proc.returncode != 0
    assert "does_not_exist" in proc.stderr
    for name in EXPERIMENTS:
        assert name in proc.stderr


@pytest.mark.parametrize("planner", ["cem", "mppi", "gradient"])
def test_planning_configs_build_their_planners_from_the_environment(planner):
    import gymnasium as gym
    import numpy as np

    from jepa.envs.adapters import TwoRoomsAdapter
    from jepa.planning.planners import ActionBounds

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        joint = compose("plan", overrides=[f"planner={planner}"])
        ac_planner_name = "cem_tworooms_ac" if planner == "cem" else planner  # the AC route's measured CEM
        ac = compose("plan_tworooms_ac", overrides=[f"planner={ac_planner_name}"])
        point_maze = compose("plan_pointmaze", overrides=[f"planner={'cem_ac' if planner == 'cem' else planner}"])
        energy = compose("energy_head_pointmaze")
    assert joint.checkpoint.endswith("tworooms_wm/checkpoints/last.ckpt") and joint.env.fixed_layout is False
    assert joint.energy._target_.endswith("GoalEnergy") and ac.energy._target_.endswith("HeadEnergy")
    # bounds come from the environment: Two Rooms' 2.45 px per step, times the planned action's environment steps
    two_rooms = TwoRoomsAdapter()
    built = instantiate(joint.planner, _convert_="all")
    built.configure(2, ActionBounds.from_env(two_rooms, joint.agent.action_repeat))
    assert built.bounds.max_norm == pytest.approx(2.45)
    ac_planner = instantiate(ac.planner, _convert_="all")
    ac_planner.configure(2, ActionBounds.from_env(two_rooms, ac.agent.action_repeat))
    assert ac_planner.bounds.max_norm == pytest.approx(4 * 2.45)
    # CEM's straight lines (16 headings at full speed, and standing still) ship for the AC route's CEM, as measured
    lines = getattr(ac_planner, "proposals", None)
    assert (None if lines is None else tuple(lines.shape)) == ((17, 4, 2) if planner == "cem" else None)
    maze = type("Maze", (), {"action_space": gym.spaces.Box(-1.0, 1.0, (2,), np.float32), "max_action_norm": None})
    maze_planner = instantiate(point_maze.planner, _convert_="all")
    maze_planner.configure(2, ActionBounds.from_env(maze, point_maze.agent.action_repeat))
    assert (maze_planner.bounds.low, maze_planner.bounds.high) == ((-10.0, -10.0), (10.0, 10.0))
    assert maze_planner.bounds.max_norm is None and maze_planner.bounds.reach() == 10.0
    assert point_maze.env._target_.endswith("PointMazeAdapter") and point_maze.max_env_steps == 300
    assert point_maze.checkpoint.endswith("pointmaze_ac/checkpoints/last.ckpt")
    assert energy.data.shards.endswith("point_maze/train/shard-*.tar") and energy.data.frames_per_clip == 11


def test_point_maze_medium_plans_as_umaze_on_its_own_model_step_limit_and_planner():
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        umaze = compose("plan_pointmaze_wm")
        medium = compose("plan_pointmaze_medium_wm")
        umaze_gradient = compose("plan_pointmaze_wm", overrides=["planner=gradient_pointmaze"])
    assert umaze.env.maze == "UMaze" and medium.env.maze == "Medium"
    assert (umaze.max_env_steps, medium.max_env_steps) == (300, 600)  # gymnasium-robotics' own episode limits
    assert medium.checkpoint.endswith("pointmaze_medium_wm/checkpoints/last.ckpt")
    # the planner that planned best on Medium's tuning episodes, with UMaze's gradient settings
    assert medium.planner == umaze_gradient.planner and medium.planner._target_.endswith("GradientPlanner")
    different = {"env", "checkpoint", "max_env_steps", "planner"}
    umaze, medium = (OmegaConf.to_container(cfg) for cfg in (umaze, medium))
    assert {k: v for k, v in medium.items() if k not in different} == {
        k: v for k, v in umaze.items() if k not in different
    }
    train = compose_train("+experiment=pointmaze_medium_wm")
    assert train.run_name == "pointmaze_medium_wm" and "point_maze_medium_k10/train" in train.data.shards
