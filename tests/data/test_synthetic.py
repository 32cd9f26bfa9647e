from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from jepa.data import synthetic
from jepa.data.decode import decode_clip
from jepa.data.synthetic import (
    SHAPES,
    boxes_mask,
    ensure_synthetic_shards,
    render_clip,
    shape_coverage,
    token_coverage,
)

REPO = Path(__file__).resolve().parents[2]


def test_shards_are_readable_with_labels_and_manifest(shard_dir, shards):
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    assert manifest["shards"] == ["shard-000000.tar", "shard-000001.tar"]
    assert manifest["counts"] == [8, 8] and manifest["num_clips"] == 16
    assert manifest["settings"]["frames"] == 8 and manifest["settings"]["size"] == 32
    samples = list(wds.DataPipeline(wds.SimpleShardList(shards), wds.tarfile_to_samples()))
    assert [s["__key__"] for s in samples] == [f"clip{i:06d}" for i in range(16)]
    for sample in samples:
        meta = json.loads(sample["json"])
        assert meta["source"] == "synthetic" and (meta["n_frames"], meta["height"], meta["width"]) == (8, 32, 32)
        assert SHAPES[meta["label"]] == meta["shape"] and 0 <= meta["direction"] < 8 and 1 <= meta["speed"] <= 3
        clip = decode_clip(sample["mp4"], 8, 1, torch.Generator())
        assert clip.shape == (8, 32, 32, 3)
    assert sorted(json.loads(s["json"])["label"] for s in samples) == sorted(list(range(4)) * 4)  # balanced


def test_ensure_reuses_complete_dataset(shard_dir, shards):
    files = [*shards, str(shard_dir / "manifest.json")]
    mtimes = [os.stat(p).st_mtime_ns for p in files]
    again = ensure_synthetic_shards(str(shard_dir), num_clips=16, frames=8, size=32, clips_per_shard=8, progress=False)
    assert again == shards and [os.stat(p).st_mtime_ns for p in files] == mtimes


def test_ensure_regenerates_incomplete_or_different(tmp_path):
    kwargs = {"num_clips": 3, "frames": 4, "size": 16, "clips_per_shard": 2, "progress": False}
    first = ensure_synthetic_shards(str(tmp_path), **kwargs)
    assert len(first) == 2
    (tmp_path / "manifest.json").unlink()  # as after a crash mid-generation
    (tmp_path / "shard-000001.tar").unlink()
    assert ensure_synthetic_shards(str(tmp_path), **kwargs) == first and all(map(os.path.isfile, first))
    changed = ensure_synthetic_shards(str(tmp_path), **{**kwargs, "num_clips": 1})
    assert len(changed) == 1 and not os.path.exists(first[1])  # stale shard removed
    with pytest.raises(TypeError):
        ensure_synthetic_shards(str(tmp_path), not_an_option=1)


def test_render_is_deterministic():
    video, meta = render_clip(5, frames=6, size=32, num_classes=4, seed=0)
    again, _ = render_clip(5, frames=6, size=32, num_classes=4, seed=0)
    assert video.shape == (6, 32, 32, 3) and video.dtype == np.uint8 and np.array_equal(video, again)
    assert meta["label"] == 5 % 4


def circular_mean(mask: np.ndarray, axis: int) -> float:
    """Centre of a (wrapped) shape along one axis of an (S, S) mask, in pixels."""
    size = mask.shape[axis]
    weights = mask.sum(axis=1 - axis)
    angles = 2 * np.pi * (np.arange(size) + 0.5) / size
    return float(np.angle((weights * np.exp(1j * angles)).sum()) % (2 * np.pi) * size / (2 * np.pi))


def test_shape_moves_with_its_direction_and_speed(monkeypatch):
    # A black background leaves exactly the shape's pixels lit.
    black = lambda rng, frames, size: np.zeros((frames, size, size, 3), np.float32)  # noqa: E731
    monkeypatch.setattr(synthetic, "_background", black)
    for index in range(12):
        video, meta = render_clip(index, frames=5, size=64, num_classes=4, seed=2)
        weights = video.max(-1).astype(np.float64)  # the texture moves rigidly with the shape
        # Mean velocity over 4 frames, displacements taken on the torus.
        moved = [(circular_mean(weights[4], a) - circular_mean(weights[0], a) + 32) % 64 - 32 for a in (1, 0)]
        moved = np.array(moved) / 4
        angle = meta["direction"] * np.pi / 4
        expected = meta["speed"] * np.array([np.cos(angle), -np.sin(angle)])  # (x, y); image y points down
        assert np.allclose(moved, expected, atol=0.2), (meta, moved, expected)


def black_background(monkeypatch):
    # A black background leaves exactly the shape's pixels lit.
    black = lambda rng, frames, size: np.zeros((frames, size, size, 3), np.float32)  # noqa: E731
    monkeypatch.setattr(synthetic, "_background", black)


def test_boxes_bound_the_rendered_pixels_also_across_the_borders(monkeypatch):
    black_background(monkeypatch)
    wrapped = 0
    for index in range(16):
        video, meta = render_clip(index, frames=12, size=32, num_classes=4, seed=3)
        lit = video.max(-1) > 0  # (T, S, S): every pixel the shape touches
        boxes = meta["boxes"]
        assert len(boxes) == 12 and all(0 <= x0 < 32 and 0 <= y0 < 32 for x0, y0, _, _ in boxes)
        inside = boxes_mask(boxes, 32)
        assert not (lit & ~inside).any(), index  # nothing lit outside the box
        for t, (x0, y0, x1, y1) in enumerate(boxes):
            # Tight to a pixel: the box also holds the faint anti-aliased edge, which can round to 0 in uint8.
            cols, rows = lit[t].any(axis=0), lit[t].any(axis=1)
            assert cols[[x0, (x0 + 1) % 32]].any() and cols[[(x1 - 1) % 32, (x1 - 2) % 32]].any(), (index, t)
            assert rows[[y0, (y0 + 1) % 32]].any() and rows[[(y1 - 1) % 32, (y1 - 2) % 32]].any(), (index, t)
            assert inside[t].sum() == (x1 - x0) * (y1 - y0)
            wrapped += x1 > 32 or y1 > 32
    assert wrapped > 0  # the check above covered shapes split by the borders


def test_shape_coverage_from_the_json_redraws_the_shape(monkeypatch, shards):
    black_background(monkeypatch)
    video, meta = render_clip(7, frames=10, size=32, num_classes=4, seed=1)
    meta = json.loads(json.dumps(meta))  # as read back from a shard
    coverage = shape_coverage(meta, frames=10, size=32)
    assert coverage.shape == (10, 32, 32) and np.array_equal(coverage > 0, video.max(-1) > 0)
    assert ((coverage > 0) <= boxes_mask(meta["boxes"], 32)).all()
    stored = json.loads(
        next(iter(wds.DataPipeline(wds.SimpleShardList(shards[:1]), wds.tarfile_to_samples())))["json"]
    )
    assert len(stored["boxes"]) == stored["n_frames"] and shape_coverage(stored, 8, 32).any()
    with pytest.raises(KeyError, match="regenerated"):
        shape_coverage({"shape": "square"}, 4, 32)


def test_token_coverage_averages_each_tubelet_and_patch():
    mask = np.zeros((4, 8, 8), dtype=bool)
    mask[0, 0:4, 0:4] = True  # frame 0, top-left patch fully: half of the (2-frame) token
    mask[2:4, 4:8, 6:8] = True  # frames 2-3, right half of the bottom-right patch: half of that token
    boxes = [[6, 6, 10, 10]] * 4  # a 4x4 box wrapped onto the four corners
    cov = token_coverage(mask, tubelet_size=2, patch_size=4)
    assert cov.shape == (2, 2, 2)
    expected = np.zeros((2, 2, 2), np.float32)
    expected[0, 0, 0] = 0.5
    expected[1, 1, 1] = 0.5
    assert np.array_equal(cov, expected)
    corners = token_coverage(boxes_mask(boxes, 8), tubelet_size=2, patch_size=4)
    assert np.allclose(corners, 4 / 16)  # each 2x2 corner piece fills a quarter of its 4x4 patch
    with pytest.raises(ValueError, match="divisible"):
        token_coverage(mask, tubelet_size=3, patch_size=4)


def test_cli_writes_shards(tmp_path):
    script = REPO / "data" / "make_synthetic.py"
    cmd = [sys.executable, str(script), "--out", str(tmp_path), "--num-clips", "2", "--frames", "4", "--size", "16"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    assert json.loads((tmp_path / "manifest.json").read_text())["num_clips"] == 2
