"""Images as 1-frame clips, for joint image + video pretraining (V-JEPA 2.1): from image shards or frames of videos.

A sample with an image member (``jpg``, ``jpeg``, ``png`` or ``webp``) gives that image; a sample with only an ``mp4``
gives one frame drawn uniformly from the video. So any video shard set (the embedded synthetic one included) doubles
as an image set, and image shards need no transcoding: ``python data/make_shards.py`` output and plain webdataset
image tars both work. Images are decoded by PyAV like the videos (FFmpeg's image demuxers), so no extra dependency.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from jepa.data.decode import decode_clip
from jepa.data.pipeline import VideoClipDataset

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


class ImageClipDataset(VideoClipDataset):
    """Endless stream of transformed single images as clips of ``frames_per_clip`` identical frames (default 1).

    Shards, resampling, shuffling, seeding, skip counting and epochs are those of `VideoClipDataset`; only what one
    sample becomes differs. A 2.1 encoder embeds a 1-frame clip with its image patch embedding; for an encoder
    without one, set ``frames_per_clip`` to its tubelet size (the image repeated, as V-JEPA 2 reads images).

    Args:
        shards: Shard spec(s) for `resolve_shards`.
        frames_per_clip: T of the output clip: the image repeated T times.
        **kwargs: `VideoClipDataset` arguments (``transform``, ``seed``, ``shuffle_buffer``, ``decoder``, ...);
            ``frame_step``, ``fps`` and ``min_frames`` do not apply (one frame is drawn from any video).

    Yields:
        ``{"video": (3, T, S, S) from the transform, "label": int, "direction": -1, "key": str}`` as `VideoClipDataset`.
    """

    def __init__(self, shards: str | list[str], frames_per_clip: int = 1, **kwargs: Any) -> None:
        if frames_per_clip < 1:
            raise ValueError(f"frames_per_clip must be >= 1 for images, got {frames_per_clip}")
        super().__init__(shards, frames_per_clip=frames_per_clip, **kwargs)

    def _decode(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        image_key = next((k for k in IMAGE_KEYS if k in sample), None)
        if image_key is not None:
            frame = decode_clip(sample[image_key], 1, 1, generator)[0]  # (H, W, 3); draws like a video's start
        elif "mp4" in sample:
            frame = self._decode_clip(sample["mp4"], 1, 1, generator)[0]  # one frame, uniform over the video
        else:
            members = sorted(k for k in sample if not k.startswith("__"))
            raise ValueError(f"no image ({'/'.join(IMAGE_KEYS)}) and no mp4: sample has {members}")
        meta = json.loads(sample["json"]) if "json" in sample else {}
        frames = [frame] * self.frames_per_clip  # T references: the transform copies only their crop
        label = meta.get("label")
        return {
            "video": self.transform(frames, generator),  # (3, T, S, S)
            "label": -1 if label is None else int(label),
            "direction": -1,  # a single frame shows no motion, whatever its video's json says
            "key": sample.get("__key__", "?"),
        }
