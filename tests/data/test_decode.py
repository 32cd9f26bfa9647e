from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch

from jepa.data.decode import clip_indices, decode_clip, encode_mp4


def smooth_video(num_frames: int = 12, height: int = 32, width: int = 48) -> np.ndarray:
    t = np.arange(num_frames)[:, None, None]
    y = np.arange(height)[None, :, None]
    x = np.arange(width)[None, None, :]
    red = 128 + 90 * np.sin((x + 2 * t) / 7.0) * np.cos(y / 9.0)
    green = np.broadcast_to(3 * y + 2 * t, red.shape)
    blue = np.broadcast_to(2 * x + 3 * t, red.shape)
    return np.stack([red, green, blue], -1).clip(0, 255).astype(np.uint8)


def test_roundtrip_shape_dtype_and_error():
    video = smooth_video()
    mp4 = encode_mp4(video, fps=8)
    clip = decode_clip(mp4, frames_per_clip=12, frame_step=1, generator=torch.Generator().manual_seed(0))
    assert clip.shape == (12, 32, 48, 3) and clip.dtype == torch.uint8
    # H.264 is lossy: close on average, not exact.
    assert (clip.float() - torch.from_numpy(video).float()).abs().mean() < 4.0


def test_clip_stays_inside_video_with_step(gray_video, frame_index):
    mp4 = encode_mp4(gray_video(20), fps=8)
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(40):
        clip = decode_clip(mp4, frames_per_clip=4, frame_step=3, generator=generator).numpy()
        idx = [frame_index(f) for f in clip]
        assert idx == list(range(idx[0], idx[0] + 10, 3)), idx
        assert 0 <= idx[0] and idx[-1] < 20
        starts.add(idx[0])
    assert starts == set(range(11))  # every valid start (0..20-10) is drawn


def test_short_video_repeats_last_sampled_frame(gray_video, frame_index):
    mp4 = encode_mp4(gray_video(5), fps=8)
    clip = decode_clip(mp4, frames_per_clip=6, frame_step=2, generator=torch.Generator().manual_seed(0))
    assert [frame_index(f) for f in clip.numpy()] == [0, 2, 4, 4, 4, 4]


def test_same_generator_state_same_clip(gray_video, frame_index):
    mp4 = encode_mp4(gray_video(20), fps=8)
    a = decode_clip(mp4, 4, 2, torch.Generator().manual_seed(3))
    b = decode_clip(mp4, 4, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_clip_indices_bounds():
    generator = torch.Generator().manual_seed(0)
    for n in (1, 5, 31, 32, 100):
        for _ in range(20):
            idx = clip_indices(n, 16, 2, generator)
            assert len(idx) == 16 and 0 <= min(idx) and max(idx) < n
            assert all(b - a in (0, 2) for a, b in zip(idx, idx[1:], strict=False))


@pytest.mark.parametrize("payload", [b"", b"\x00garbage" * 64])
def test_undecodable_raises_value_error(payload):
    with pytest.raises(ValueError, match="video"):
        decode_clip(payload, 4, 1, torch.Generator())


def test_truncated_mp4_raises_value_error(gray_video):
    mp4 = encode_mp4(gray_video(8), fps=8)
    with pytest.raises(ValueError):
        decode_clip(mp4[: len(mp4) // 2], 4, 1, torch.Generator())


def test_headerless_frame_count_matroska(gray_video, frame_index):
    # Matroska reports 0 frames in its header (PITFALLS 11): we must count frames from the packets.
    video = gray_video(12)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=8, options={"bf": "2", "g": "6"})
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i, array in enumerate(video):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(io.BytesIO(buffer.getvalue())) as container:
        assert container.streams.video[0].frames == 0
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(30):
        idx = [frame_index(f) for f in decode_clip(buffer.getvalue(), 3, 2, generator).numpy()]
        assert idx == [idx[0], idx[0] + 2, idx[0] + 4] and idx[-1] < 12
        starts.add(idx[0])
    assert max(starts) == 7


def test_encode_rejects_odd_size():
    with pytest.raises(ValueError, match="even"):
        encode_mp4(np.zeros((2, 31, 32, 3), np.uint8), fps=8)


def test_lossless_mp4_returns_the_exact_frames():
    # a small saturated dot on a flat background: yuv420p smears its colour, the lossless path keeps every value
    frames = np.full((6, 16, 16, 3), 20, np.uint8)
    for t in range(6):
        frames[t, 5:8, 2 + t : 5 + t] = (255, 64, 32)
    generator = torch.Generator().manual_seed(0)
    exact = decode_clip(encode_mp4(frames, fps=10, lossless=True), 6, 1, generator).numpy()
    assert np.array_equal(exact, frames)
    lossy = decode_clip(encode_mp4(frames, fps=10), 6, 1, torch.Generator().manual_seed(0)).numpy()
    assert np.abs(lossy.astype(int) - frames).max() > 10
