"""Image batches for joint image + video pretraining: image shards and video frames as 1-frame clips, mixed by weight."""

from __future__ import annotations

import io
import itertools
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from jepa.data.images import ImageClipDataset
from jepa.data.shards import write_shards
from jepa.data.transforms import VideoTransform

REPO = Path(__file__).resolve().parents[2]
EVAL = VideoTransform(crop_size=16, training=False, mean=(0, 0, 0), std=(1, 1, 1))  # pixels / 255, no crop


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, np.ndarray]]:
    """Six 16x16 images (png, webp, jpg members), each a distinct constant colour with a label."""
    out = tmp_path_factory.mktemp("images")
    samples, images = [], {}
    for i, (key, fmt) in enumerate(itertools.product(["a", "b"], [("png", "PNG"), ("webp", "WEBP"), ("jpg", "JPEG")])):
        image = np.zeros((16, 16, 3), np.uint8) + np.array([40 * i, 200 - 30 * i, 100], np.uint8)
        name = f"{key}{fmt[0]}"
        images[name] = image
        samples.append({"__key__": name, fmt[0]: encoded(image, fmt[1]), "json": {"label": i}})
    return write_shards(samples, str(out / "img-%06d.tar"), maxcount=100), images


def test_image_members_become_one_frame_clips(image_shards):
    shards, images = image_shards
    stream = iter(ImageClipDataset(shards, transform=EVAL, shuffle_buffer=0))
    seen = {}
    for sample in itertools.islice(stream, 24):
        assert sample["video"].shape == (3, 1, 16, 16) and sample["direction"] == -1
        seen[sample["key"]] = sample
    assert set(seen) == set(images)  # png, webp and jpg all decode
    for key, sample in seen.items():
        pixels = sample["video"][:, 0].permute(1, 2, 0).numpy() * 255
        tolerance = 3 if key.endswith("jpg") else 0.01  # jpg is lossy, png and lossless webp exact
        assert np.abs(pixels - images[key]).max() <= tolerance, key


def test_video_samples_give_one_random_frame_repeated_to_frames_per_clip(tmp_path, gray_video, frame_index):
    from jepa.data.decode import encode_mp4

    shards = write_shards(
        [{"__key__": f"v{i}", "mp4": encode_mp4(gray_video(12), fps=8)} for i in range(4)],
        str(tmp_path / "v-%06d.tar"),
        maxcount=100,
    )
    frames = Counter()
    for sample in itertools.islice(iter(ImageClipDataset(shards, frames_per_clip=2, transform=EVAL)), 60):
        clip = sample["video"]  # (3, 2, 16, 16): one frame, repeated
        assert clip.shape == (3, 2, 16, 16) and torch.equal(clip[:, 0], clip[:, 1])
        frames[frame_index(clip[:, 0].numpy() * 255)] += 1
    assert set(frames) <= set(range(12)) and len(frames) >= 8  # uniform over the video, not always frame 0
    with pytest.raises(ValueError, match="frames_per_clip"):
        ImageClipDataset(shards, frames_per_clip=0)


def compose_data(shard_dir: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=image_video",
                f"data.synthetic_dir={shard_dir}",
                "data.synthetic.num_clips=16",  # the `shard_dir` set, reused as is
                "data.synthetic.frames=8",
                "+data.synthetic.clips_per_shard=8",
                "data.synthetic.size=32",
                "encoder.num_frames=4",
                "encoder.img_size=32",
                "encoder.patch_size=8",
                "data.batch_size=2",
                "data.num_workers=2",
                "data.steps_per_epoch=12",
                *overrides,
            ],
        )
    return instantiate(cfg.data, _convert_="all")


def test_image_video_config_mixes_image_and_video_batches_with_their_own_sizes_and_masks(shard_dir):
    # the embedded-data defaults, the images at their own batch size and resolution
    dm = compose_data(shard_dir, ["data.datasets.1.batch_size=3", "data.datasets.1.crop_size=48"])
    dm.setup("fit")
    batches = list(itertools.islice(iter(dm.train_set), 40))
    kinds = Counter()
    for batch in batches:
        images = int(batch["dataset"][0]) == 1
        kinds[images] += 1
        shape, tokens = ((3, 3, 1, 48, 48), 1 * 6 * 6) if images else ((2, 3, 4, 32, 32), 2 * 4 * 4)
        assert tuple(batch["video"].shape) == shape
        for ctx, tgt in zip(batch["ctx_idx"], batch["tgt_idx"], strict=True):
            assert ctx.shape[0] == tgt.shape[0] == shape[0] and ctx.max() < tokens and tgt.max() < tokens
    assert abs(kinds[True] - 0.25 * 40) <= 2  # the low-discrepancy mix: within a couple of batches of 25%
    with pytest.raises(ValueError, match="its own batch_transform"):  # masks for another token grid
        compose_data(shard_dir, ["data.datasets.1.crop_size=48", "data.datasets.1.batch_transform=null"]).setup("fit")


def test_image_fraction_is_deterministic_and_resumes_mid_epoch(shard_dir):
    def run(global_step: int = 0) -> list[tuple[int, tuple[str, ...]]]:
        dm = compose_data(shard_dir, ["data.datasets.0.weight=0.5", "data.datasets.1.weight=0.5"])
        dm.setup("fit")
        dm.trainer = SimpleNamespace(global_step=global_step, accumulate_grad_batches=1)
        return [(int(b["dataset"][0]), tuple(b["key"])) for b in dm.train_dataloader()]

    first = run()
    assert len(first) == 12 and run() == first
    assert abs(sum(kind for kind, _ in first) - 6) <= 2  # half the batches are images
    assert run(global_step=5) == first[5:]  # a resumed run continues the same stream: same kinds, same samples
