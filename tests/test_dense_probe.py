"""benchmarks/dense_probe.py: per-token coverage labels line up with the encoder's tokens; the probe's metrics."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks import dense_probe
from jepa.data.synthetic import boxes_mask, make_synthetic_shards, render_clip, shape_coverage, token_coverage
from jepa.models.vit import PatchEmbed3D


def test_token_labels_follow_the_encoders_token_order():
    # One lit (tubelet, patch) cell at (t, h, w) = (1, 2, 0) of a (2, 4, 4) grid: the patch embedding's token index of
    # that cell must be where the flattened coverage has it.
    mask = np.zeros((4, 16, 16), dtype=bool)
    mask[2:4, 8:12, 0:4] = True
    labels = token_coverage(mask, tubelet_size=2, patch_size=4).reshape(-1)
    embed = PatchEmbed3D(patch_size=4, tubelet_size=2, in_chans=1, embed_dim=8)
    tokens = embed(torch.from_numpy(mask).float()[None, None])[0]  # (N, D)
    moved = (tokens - embed(torch.zeros(1, 1, 4, 16, 16))[0]).abs().sum(-1) > 0
    assert moved.nonzero().flatten().tolist() == np.flatnonzero(labels).tolist() == [1 * 16 + 2 * 4 + 0]


def test_square_token_coverage_from_geometry_agrees_with_its_boxes():
    # A square fills its box except the anti-aliased edge, so the two label sources agree token by token.
    checked = 0
    for index in range(0, 16, 4):  # class 0: square
        _, meta = render_clip(index, frames=8, size=32, num_classes=4, seed=5)
        from_shape = token_coverage(shape_coverage(meta, 8, 32), tubelet_size=2, patch_size=8)
        from_boxes = token_coverage(boxes_mask(meta["boxes"], 32), tubelet_size=2, patch_size=8)
        edge = 2 * 2 * 8 / 64  # at most a 1-px ring of each side of an 8x8 patch
        assert np.abs(from_shape - from_boxes).max() <= edge and (from_boxes >= from_shape).all()
        checked += (from_shape >= 0.5).sum()
    assert checked > 0


def test_token_set_labels_the_clips_it_feeds_the_encoder(tmp_path):
    make_synthetic_shards(str(tmp_path), num_clips=3, frames=12, size=32, clips_per_shard=8, progress=False)
    shards = sorted(str(p) for p in tmp_path.glob("shard-*.tar"))
    tokens = dense_probe.TokenSet(shards, num_frames=4, frame_step=2, crop_size=16, patch_size=4, tubelet_size=2)
    assert tokens.clips.shape == (6, 3, 4, 16, 16) and tokens.coverage.shape == (6, 2 * 4 * 4)
    _, meta = render_clip(1, frames=12, size=32, num_classes=4, seed=0)
    late = np.array([5, 7, 9, 11])  # the video's second clip: the last span of 7 frames, stride 2
    expected = token_coverage(shape_coverage(meta, 12, 32)[late], tubelet_size=2, patch_size=8).reshape(-1)
    assert torch.allclose(tokens.coverage[3], torch.from_numpy(expected))
    assert 0 < (tokens.coverage >= 0.5).float().mean() < 0.5


def test_linear_probe_and_metrics():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 6, generator=generator)
    y = (x[:, 0] + 0.5 * x[:, 1] > 1.2).float()  # ~12% positives, linearly separable
    mean, std, weight, bias = dense_probe.fit_linear_probe(x, y)
    predicted = ((x - mean) / std) @ weight + bias > 0
    metrics = dense_probe.dense_metrics(predicted, y.bool())
    assert metrics["balanced_accuracy"] > 97 and metrics["iou"] > 85
    never = dense_probe.dense_metrics(torch.zeros(2000, dtype=torch.bool), y.bool())
    assert never["balanced_accuracy"] == 50 and never["iou"] == 0 and never["accuracy"] > 80
