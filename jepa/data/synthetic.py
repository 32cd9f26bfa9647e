"""The embedded default dataset: moving textured shapes on a textured background, written as mp4 webdataset shards.

Each clip shows one shape (the class: square, circle, triangle, cross) moving at constant velocity in one of 8
directions over low-frequency coloured noise. The shape wraps around the borders (the frame is a torus) instead of
bouncing, so the velocity, and with it the ``direction`` label, holds for every frame of the clip.

Where the shape is (for dense probes, `benchmarks/dense_probe.py`): each sample's json records

- ``boxes``: per frame ``[x0, y0, x1, y1]`` in pixels, the tightest box around every pixel the shape touches
  (anti-aliased edge included), written on the torus: ``0 <= x0 < S`` and ``x0 < x1 <= x0 + S``, so a shape crossing
  the right border has ``x1 > S`` and covers columns ``x0 .. S - 1`` and ``0 .. x1 - S - 1`` (rows likewise). One
  box per frame stays exact for a wrapped shape, where an ``[x0, x1]`` clipped to the frame would not.
  `boxes_mask` turns them into a per-pixel mask.
- ``start``, ``velocity`` (px, px/frame, as (x, y)) and ``radius``: the shape's exact geometry, from which
  `shape_coverage` recomputes the per-pixel coverage the renderer drew (a circle, triangle or cross fills only part of
  its box). A per-frame pixel mask in the json would cost ~T*S*S/8 bytes per clip; these few numbers give the same.

`token_coverage` averages either mask over the (tubelet, patch, patch) cells of a ViT's token grid.
"""

from __future__ import annotations

import glob
import inspect
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from jepa.data.decode import encode_mp4
from jepa.data.shards import write_shards

SHAPES = ("square", "circle", "triangle", "cross")
NUM_DIRECTIONS = 8
MANIFEST = "manifest.json"
_FORMAT = "jepa-synthetic-v2"  # v2: json has boxes and the shape geometry


def _background(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """Low-frequency colour noise, static or drifting by at most 0.5 px/frame: (T, S, S, 3) float32 in [0, 1]."""
    drift = rng.uniform(-0.5, 0.5, size=2) if rng.random() < 0.5 else np.zeros(2)
    pad = int(math.ceil(np.abs(drift).max() * (frames - 1)))
    coarse = torch.from_numpy(rng.standard_normal((1, 3, 5, 5)).astype(np.float32))
    noise = F.interpolate(coarse, size=(size + 2 * pad,) * 2, mode="bicubic", align_corners=False)[0]
    base = rng.uniform(0.2, 0.8, size=(3, 1, 1)).astype(np.float32)
    canvas = np.clip(base + 0.15 * noise.numpy(), 0.0, 1.0).transpose(1, 2, 0)  # (S + 2 pad, S + 2 pad, 3)
    offsets = np.rint(pad + drift[None] * np.arange(frames)[:, None]).astype(int)  # (T, 2) as (y, x)
    return np.stack([canvas[oy : oy + size, ox : ox + size] for oy, ox in offsets])


def _shape_distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Approximate signed distance to the shape's outline (negative inside); dx, dy in pixels from its centre."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "square":
        return np.maximum(ax, ay) - r
    if shape == "circle":
        return np.sqrt(dx**2 + dy**2) - r
    if shape == "triangle":  # apex up, base 2r at the bottom (image y points down)
        slant = (ax - (dy + r) / 2) * (2 / math.sqrt(5))
        return np.maximum(np.maximum(dy - r, -r - dy), slant)
    if shape == "cross":
        arm = r / 3
        return np.minimum(np.maximum(ax - arm, ay - r), np.maximum(ay - arm, ax - r))
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _torus_offsets(centres: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre displacements from each frame's shape centre on the torus: dx (T, 1, S), dy (T, S, 1)."""
    grid = np.arange(size, dtype=np.float32) + 0.5
    # Displacements on the torus, so a shape crossing a border shows on both sides.
    dx = (grid[None, None, :] - centres[:, 0, None, None] + size / 2) % size - size / 2
    dy = (grid[None, :, None] - centres[:, 1, None, None] + size / 2) % size - size / 2
    return dx, dy


def _centres(start: np.ndarray, velocity: np.ndarray, frames: int, size: int) -> np.ndarray:
    """(T, 2) shape centres as (x, y), wrapped into [0, S)."""
    t = np.arange(frames, dtype=np.float32)[:, None]
    return (start + velocity * t) % size


def _coverage(
    shape: str, start: np.ndarray, velocity: np.ndarray, radius: float, frames: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shape's per-pixel coverage (T, S, S) in [0, 1], and the torus offsets dx (T, 1, S), dy (T, S, 1)."""
    dx, dy = _torus_offsets(_centres(start, velocity, frames, size), size)
    alpha = np.clip(0.5 - _shape_distance(shape, dx, dy, radius), 0.0, 1.0)  # (T, S, S)
    return alpha, dx, dy


def _torus_interval(present: np.ndarray) -> tuple[int, int]:
    """Tightest circular interval [lo, hi) (hi may exceed len) holding every True of a 1-D mask with at least one."""
    size = len(present)
    if present.all():
        return 0, size
    # The interval starts right after the longest circular run of False.
    doubled = np.concatenate([present, present])
    best_len, best_end, run = -1, 0, 0
    for i, p in enumerate(doubled):
        run = 0 if p else run + 1
        if run > best_len and run <= size:
            best_len, best_end = run, i
    lo = (best_end + 1) % size
    return lo, lo + size - best_len


def _boxes(alpha: np.ndarray) -> list[list[int]]:
    """Per-frame torus boxes [x0, y0, x1, y1] (see the module docstring) of the pixels with alpha > 0."""
    boxes = []
    for frame in alpha > 0:
        x0, x1 = _torus_interval(frame.any(axis=0))
        y0, y1 = _torus_interval(frame.any(axis=1))
        boxes.append([x0, y0, x1, y1])
    return boxes


def render_clip(index: int, frames: int, size: int, num_classes: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Render clip ``index`` of the dataset; the same (index, seed) always gives the same clip.

    Direction k moves at angle k * 45 degrees counter-clockwise from "right" (image y points down, so "up" is -y).

    Args:
        index: Clip number; its class is ``index % num_classes`` so classes are balanced.
        frames: T.
        size: S (square frames).
        num_classes: How many of `SHAPES` to use (1-4).
        seed: Dataset seed.

    Returns:
        (T, S, S, 3) uint8 frames and the labels ``{"label", "shape", "direction", "speed", "boxes", "start",
        "velocity", "radius"}`` (the last four locate the shape, see the module docstring).
    """
    rng = np.random.default_rng([seed, index])
    label = index % num_classes
    direction = int(rng.integers(NUM_DIRECTIONS))
    speed = float(rng.uniform(1.0, 3.0))
    angle = direction * 2 * math.pi / NUM_DIRECTIONS
    velocity = speed * np.array([math.cos(angle), -math.sin(angle)])  # (x, y) px/frame
    start = rng.uniform(0, size, size=2)
    radius = float(rng.uniform(0.12, 0.2) * size)
    alpha, dx, dy = _coverage(SHAPES[label], start, velocity, radius, frames, size)

    # Stripes fixed to the shape, so the texture moves with it.
    theta, period = rng.uniform(0, math.pi), rng.uniform(3.0, 6.0)
    stripes = 0.8 + 0.2 * np.sin(2 * math.pi * (dx * math.cos(theta) + dy * math.sin(theta)) / period)
    background = _background(rng, frames, size)
    # Half a turn around the colour cube from the background's mean keeps the shape visible.
    colour = (background.mean(axis=(0, 1, 2)) + 0.5 + rng.uniform(-0.15, 0.15, size=3)) % 1.0
    foreground = np.clip(stripes[..., None] * colour, 0.0, 1.0)
    video = background * (1 - alpha[..., None]) + foreground * alpha[..., None]
    meta = {
        "label": label,
        "shape": SHAPES[label],
        "direction": direction,
        "speed": round(speed, 4),
        "boxes": _boxes(alpha),
        # Full precision (json floats round-trip exactly), so `shape_coverage` redraws the very same pixels.
        "start": [float(v) for v in start],
        "velocity": [float(v) for v in velocity],
        "radius": radius,
    }
    return (video * 255 + 0.5).astype(np.uint8), meta


def shape_coverage(meta: dict[str, Any], frames: int, size: int) -> np.ndarray:
    """The fraction of each pixel the shape covers, recomputed from a sample's json exactly as it was rendered.

    Args:
        meta: The sample's json (needs ``shape``, ``start``, ``velocity``, ``radius``).
        frames: T, the first T frames of the clip.
        size: S, the stored frame side (json ``height``).

    Returns:
        (T, S, S) float32 in [0, 1]: 1 inside the shape, 0 outside, fractional on its one-pixel anti-aliased edge.
    """
    missing = [k for k in ("shape", "start", "velocity", "radius") if k not in meta]
    if missing:
        raise KeyError(
            f"sample json lacks {missing}: it was written before the synthetic format recorded the shape's geometry; "
            f"delete the dataset folder so it is regenerated ({_FORMAT})"
        )
    start, velocity = np.asarray(meta["start"]), np.asarray(meta["velocity"])
    return _coverage(meta["shape"], start, velocity, float(meta["radius"]), frames, size)[0].astype(np.float32)


def boxes_mask(boxes: list[list[int]], size: int) -> np.ndarray:
    """Pixels inside per-frame torus boxes (module docstring): (T, S, S) bool from T boxes [x0, y0, x1, y1]."""
    mask = np.zeros((len(boxes), size, size), dtype=bool)
    for t, (x0, y0, x1, y1) in enumerate(boxes):
        rows = np.arange(y0, y1) % size
        cols = np.arange(x0, x1) % size
        mask[t][np.ix_(rows, cols)] = True
    return mask


def token_coverage(mask: np.ndarray, tubelet_size: int, patch_size: int) -> np.ndarray:
    """Mean of a per-pixel mask over each token's (tubelet, patch, patch) cell: the share of the token covered.

    Args:
        mask: (T, H, W) coverage (bool or float in [0, 1]); T, H, W divisible by the cell size.
        tubelet_size: Frames per token (V-JEPA: 2).
        patch_size: Pixels per token side, in the mask's resolution.

    Returns:
        (T / tubelet, H / patch, W / patch) float32, token (t, h, w) in the encoder's token order (flatten it).
    """
    T, H, W = mask.shape
    if T % tubelet_size or H % patch_size or W % patch_size:
        raise ValueError(f"mask shape {mask.shape} is not divisible by the token cell ({tubelet_size}, {patch_size})")
    cells = mask.astype(np.float32).reshape(
        T // tubelet_size, tubelet_size, H // patch_size, patch_size, W // patch_size, patch_size
    )
    return cells.mean(axis=(1, 3, 5))


def _samples(
    num_clips: int, frames: int, size: int, fps: int, num_classes: int, seed: int, progress: bool
) -> Iterator[dict[str, Any]]:
    for index in tqdm(range(num_clips), desc="synthetic clips", unit="clip", disable=not progress):
        video, meta = render_clip(index, frames, size, num_classes, seed)
        info = {"fps": fps, "n_frames": frames, "height": size, "width": size, "source": "synthetic", **meta}
        yield {"__key__": f"clip{index:06d}", "mp4": encode_mp4(video, fps), "json": info}


def make_synthetic_shards(
    out_dir: str,
    num_clips: int = 512,
    frames: int = 16,
    size: int = 64,
    fps: int = 8,
    clips_per_shard: int = 64,
    num_classes: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> list[str]:
    """Generate the synthetic dataset into ``out_dir/shard-%06d.tar`` and write ``out_dir/manifest.json`` last.

    The manifest marks a complete dataset: it is removed first and written (atomically) only after every shard is
    closed, so an interrupted generation is redone by `ensure_synthetic_shards`.

    Args:
        out_dir: Output folder (created).
        num_clips: Clips to write.
        frames: Frames per clip, T.
        size: Frame side S (even, for yuv420p).
        fps: Frame rate stored in the mp4 and the json.
        clips_per_shard: Samples per tar shard.
        num_classes: Shapes used, 1-4 (`SHAPES` order).
        seed: Dataset seed.
        progress: Show a tqdm bar.

    Returns:
        Absolute shard paths.
    """
    if not 1 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be in 1..{len(SHAPES)}, got {num_classes}")
    if size % 2 or size < 8 or frames < 1 or num_clips < 1 or clips_per_shard < 1:
        raise ValueError(
            f"need an even size >= 8 and positive counts, got size={size}, frames={frames}, "
            f"num_clips={num_clips}, clips_per_shard={clips_per_shard}"
        )
    settings = dict(
        num_clips=num_clips,
        frames=frames,
        size=size,
        fps=fps,
        clips_per_shard=clips_per_shard,
        num_classes=num_classes,
        seed=seed,
    )
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    for stale in glob.glob(os.path.join(out_dir, "shard-*.tar")):
        os.remove(stale)

    samples = _samples(num_clips, frames, size, fps, num_classes, seed, progress)
    paths = write_shards(samples, os.path.join(out_dir, "shard-%06d.tar"), maxcount=clips_per_shard)
    counts = [min(clips_per_shard, num_clips - i * clips_per_shard) for i in range(len(paths))]
    manifest = {
        "format": _FORMAT,
        "settings": settings,
        "shards": [os.path.basename(p) for p in paths],
        "counts": counts,
        "num_clips": sum(counts),
        "classes": list(SHAPES[:num_classes]),
    }
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, manifest_path)
    return paths


def ensure_synthetic_shards(out_dir: str, **kwargs: Any) -> list[str]:
    """Return the synthetic shards in ``out_dir``, generating them unless a complete matching set is there.

    Args:
        out_dir: Dataset folder.
        **kwargs: `make_synthetic_shards` arguments; the existing set is reused only if its manifest records the same
            settings and every listed shard exists.

    Returns:
        Absolute shard paths.
    """
    bound = inspect.signature(make_synthetic_shards).bind(out_dir, **kwargs)  # rejects unknown kwargs early
    bound.apply_defaults()
    settings = {k: v for k, v in bound.arguments.items() if k not in ("out_dir", "progress")}
    out_dir = os.path.abspath(out_dir)
    try:
        with open(os.path.join(out_dir, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        manifest = None
    if manifest and manifest.get("format") == _FORMAT and manifest.get("settings") == settings:
        paths = [os.path.join(out_dir, name) for name in manifest["shards"]]
        if all(os.path.isfile(p) for p in paths):
            return paths
    return make_synthetic_shards(**bound.arguments)
