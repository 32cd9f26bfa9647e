"""Trajectory shards: converter from npz / hdf5 episodes, window sampling with summed actions, Two Rooms data."""

from __future__ import annotations

import runpy
import sys
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from jepa.data.decode import decode_clip
from jepa.data.trajectories import TrajectoryWindowDataset, window_actions
from jepa.data.trajectory_convert import convert_episodes
from jepa.data.trajectory_shards import trajectory_sample
from jepa.data.transforms import VideoTransform
from jepa.envs.recorders import TwoRoomsDataModule, ensure_two_rooms_shards, make_two_rooms_shards

REPO = Path(__file__).resolve().parents[2]
T, SIZE = 12, 32


def episode(seed: int, action_dim: int = 3) -> dict[str, np.ndarray]:
    """Frame t is uniformly grey level 20 t, state t = sum of the first t actions (a decodable ground truth)."""
    rng = np.random.default_rng(seed)
    actions = rng.normal(size=(T - 1, action_dim)).astype(np.float32)
    states = np.concatenate([np.zeros((1, action_dim)), np.cumsum(actions, 0)]).astype(np.float32)
    frames = np.repeat((np.arange(T) * 20).astype(np.uint8)[:, None, None, None], SIZE, 1).repeat(SIZE, 2).repeat(3, 3)
    return {"frames": frames, "actions": actions, "states": states}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    src = tmp_path_factory.mktemp("episodes")
    for i in range(3):
        np.savez(src / f"ep{i}.npz", **episode(i))
    with h5py.File(src / "ep3.h5", "w") as f:
        for key, value in episode(3).items():
            f[key] = value
    np.savez(src / "broken.npz", frames=np.zeros((4, 8, 8, 3), np.uint8))  # no actions/states
    out = tmp_path_factory.mktemp("shards")
    return convert_episodes(str(src), str(out), episodes_per_shard=2, progress=False)


def test_converter_summary(converted):
    assert converted["episodes"] == 4 and converted["frames"] == 4 * T
    assert (converted["action_dim"], converted["state_dim"]) == (3, 3)
    assert len(converted["shards"]) == 2
    assert list(converted["skipped"]) and "missing ['actions', 'states']" in next(iter(converted["skipped"].values()))


def test_converter_lossless_keeps_the_exact_frames(tmp_path):
    ep = episode(0)
    for t in range(T):  # a small saturated dot: H.264's yuv420p would smear its colour
        ep["frames"][t, 5:8, 2 + t : 5 + t] = (255, 64, 32)
    np.savez(tmp_path / "ep.npz", **ep)
    summary = convert_episodes(str(tmp_path), str(tmp_path / "shards"), progress=False, lossless=True)
    with tarfile.open(summary["shards"][0]) as tar:
        mp4 = next(tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".mp4"))
    decoded = decode_clip(mp4, T, 1, torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(decoded, ep["frames"])


def test_window_actions_are_summed_over_the_step():
    actions = np.arange(10, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(window_actions(actions, [1, 3, 5]), [[1 + 2], [3 + 4]])


def test_windows_match_frames_actions_and_states(converted):
    data = TrajectoryWindowDataset(
        converted["shards"], frames_per_clip=4, frame_step=3, transform=VideoTransform(SIZE, training=False), seed=1
    )
    stream = data.stream(0, 0, 0)
    for _ in range(8):
        sample = next(stream)
        video, actions, states = sample["video"], sample["actions"], sample["states"]
        assert video.shape == (3, 4, SIZE, SIZE) and actions.shape == (3, 3) and states.shape == (4, 3)
        # states are cumulative sums of the per-step actions, so summed window actions are state differences
        torch.testing.assert_close(actions, states[1:] - states[:-1], atol=1e-5, rtol=0)
        # the decoded frames are the ones the states belong to: grey level 20 t, 3 steps apart
        grey = (video[0, :, SIZE // 2, SIZE // 2] * 0.229 + 0.485) * 255
        t = torch.round(grey / 20)
        assert torch.equal(t[1:] - t[:-1], torch.full((3,), 3.0))


def test_bad_episode_message():
    bad = episode(0)
    with pytest.raises(ValueError, match=r"episode x: need frames .* states \(5, 3\)"):
        trajectory_sample("x", bad["frames"], bad["actions"], bad["states"][:5])


def test_two_rooms_datamodule(tmp_path):
    embedded = dict(num_train=6, num_val=2, steps=12, seed=0, progress=False)
    paths = ensure_two_rooms_shards(str(tmp_path), **embedded)
    assert set(paths) == {"train", "val"}
    stamp = Path(paths["train"][0]).stat().st_mtime_ns
    assert ensure_two_rooms_shards(str(tmp_path), **embedded) == paths  # reused, not regenerated
    assert Path(paths["train"][0]).stat().st_mtime_ns == stamp
    dm = TwoRoomsDataModule(embedded_dir=str(tmp_path), embedded=embedded, batch_size=2, num_workers=0, crop_size=32)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 3, 8, 32, 32) and batch["actions"].shape == (2, 7, 2)
    assert batch["states"].shape == (2, 8, 2)
    assert batch["scene"].shape == (2,) and bool((batch["scene"] >= 0).all())


def test_two_rooms_fast_walk_settings_are_kept_and_reused(tmp_path):
    from omegaconf import OmegaConf

    embedded = dict(num_train=2, num_val=1, steps=8, speed_range=(2.0, 2.45), bump_fraction=0.5, progress=False)
    paths = ensure_two_rooms_shards(str(tmp_path), **embedded)
    stamp = Path(paths["train"][0]).stat().st_mtime_ns
    # Hydra hands the range over as a ListConfig: it must match the manifest's list, not regenerate the shards
    again = {**embedded, "speed_range": OmegaConf.create([2.0, 2.45])}
    assert ensure_two_rooms_shards(str(tmp_path), **again) == paths
    assert Path(paths["train"][0]).stat().st_mtime_ns == stamp
    ensure_two_rooms_shards(str(tmp_path), **{**embedded, "speed_range": (0.5, 2.45)})  # other settings: rewritten
    assert Path(paths["train"][0]).stat().st_mtime_ns != stamp


def test_two_rooms_episodes_share_layouts_by_scene(tmp_path):
    import json

    paths = make_two_rooms_shards(
        str(tmp_path), num_train=8, num_val=1, steps=4, episodes_per_layout=4, progress=False
    )
    infos = []
    for path in paths["train"]:
        with tarfile.open(path) as tar:
            infos += [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]
    by_scene = {}
    for info in infos:
        by_scene.setdefault(info["scene"], set()).add(tuple(info["layout"]))
    assert sorted(by_scene) == [0, 1] and all(len(layouts) == 1 for layouts in by_scene.values())
    assert by_scene[0] != by_scene[1]  # two random layouts, four episodes each


def test_make_trajectories_cli(tmp_path, monkeypatch, capsys):
    src = tmp_path / "eps"
    src.mkdir()
    for i in range(2):
        np.savez(src / f"e{i}.npz", **episode(i))
    argv = ["make_trajectories.py", "--input", str(src), "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(REPO / "data" / "make_trajectories.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "2 episodes" in out and "action_dim 3" in out
    monkeypatch.setattr(sys, "argv", [*argv[:2], str(tmp_path / "nothing"), *argv[3:]])
    with pytest.raises(SystemExit):
        runpy.run_path(str(REPO / "data" / "make_trajectories.py"), run_name="__main__")
    assert "no .npz/.h5/.hdf5 episode files" in capsys.readouterr().err
