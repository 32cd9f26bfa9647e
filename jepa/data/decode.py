"""Decode random clips from in-memory video bytes (PyAV, or torchcodec when installed); encode frames to H.264 mp4."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter


def clip_indices(num_frames: int, frames_per_clip: int, frame_step: int, generator: torch.Generator) -> list[int]:
    """Frame indices of a random clip: ``start, start + step, ...`` all inside the video.

    The start is uniform over every position where the whole clip fits. A video shorter than
    ``(frames_per_clip - 1) * frame_step + 1`` frames starts at 0 and repeats its last sampled frame, as V-JEPA 2's
    ``loadvideo_decord`` pads short videos.

    Args:
        num_frames: Frames actually present in the video (> 0).
        frames_per_clip: Frames in the clip, T.
        frame_step: Stride between sampled frames.
        generator: Source of the random start.

    Returns:
        T frame indices, non-decreasing, each in ``[0, num_frames)``.
    """
    span = (frames_per_clip - 1) * frame_step + 1
    # Always draw, even when there is no choice, so the generator advances the same way for every video.
    u = float(torch.rand((), generator=generator))
    start = min(int(u * (num_frames - span + 1)), num_frames - span) if num_frames >= span else 0
    indices = [i for i in range(start, start + span, frame_step) if i < num_frames]
    return indices + [indices[-1]] * (frames_per_clip - len(indices))


def step_for_fps(source_fps: float | None, fps: float | None, frame_step: int) -> int:
    """Frame stride that samples a ``source_fps`` video at about ``fps``.

    As vjepa2 ``VideoDataset.loadvideo_decord``: ``fstp = ceil(avg_fps) // fps`` (29.97 fps at 4 fps -> 7).

    Args:
        source_fps: The video's frame rate; None or <= 0 when unknown.
        fps: Target sampling rate; None keeps ``frame_step``.
        frame_step: Stride used when ``fps`` is None or the source rate is unknown.

    Returns:
        The stride, >= 1.
    """
    if fps is None or not source_fps or source_fps <= 0:
        return frame_step
    return max(1, int(math.ceil(source_fps - 1e-6) // fps))


# A video whose frames span less than this fraction of the duration its header declares is truncated.
MIN_COMPLETE_FRACTION = 0.9


def check_complete(
    decoded_seconds: float, declared_seconds: float, frame_seconds: float, min_fraction: float = MIN_COMPLETE_FRACTION
) -> None:
    """The one rule the shard builder and the loader share for a cut-off video (a truncated mp4 whose index is at
    the front opens fine and simply ends early).

    Args:
        decoded_seconds: Time spanned by the frames actually present (first to last frame, plus one frame).
        declared_seconds: The duration the container declares (0 when it declares none: nothing to compare).
        frame_seconds: One frame's duration; videos declaring at most two frames are not judged.
        min_fraction: Least fraction of the declared duration that must be present.

    Raises:
        ValueError: ``"truncated: X s decoded of Y s"``.
    """
    if declared_seconds > 2 * frame_seconds and decoded_seconds < min_fraction * declared_seconds:
        raise ValueError(f"truncated: {decoded_seconds:.2f} s decoded of {declared_seconds:.2f} s")


def _check_length(num_frames: int, min_frames: int, size: int) -> None:
    if num_frames < min_frames:
        raise ValueError(f"video too short: {num_frames} frames < min_frames={min_frames} ({size} bytes)")


def _open(mp4: bytes) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(mp4), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as exn:
        raise ValueError(f"cannot open video ({len(mp4)} bytes): {exn}") from exn


def _to_rgb(frames: list[av.VideoFrame]) -> list[torch.Tensor]:
    # One reformatter (one swscale context) for the whole clip: frame.to_ndarray(format=...) builds a new one per
    # frame, which costs 5-35 ms per clip (PITFALLS 11).
    reformatter = VideoReformatter()
    return [torch.from_numpy(reformatter.reformat(f, format="rgb24", threads=1).to_ndarray()) for f in frames]


def _decode_from_keyframe(
    codec: av.codec.context.CodecContext, packets: list[av.Packet], wanted_pts: set[int]
) -> dict[int, av.VideoFrame] | None:
    """Decode from the last keyframe before the first wanted frame until every wanted pts came out.

    Returns None when some wanted frame never appears (corrupt packets, open GOPs), so the caller falls back to a
    full decode.
    """
    first = min(wanted_pts)
    start = 0
    for i, packet in enumerate(packets):
        if packet.is_keyframe and packet.pts <= first:
            start = i
    found: dict[int, av.VideoFrame] = {}
    for packet in [*packets[start:], None]:  # None flushes the decoder's delayed frames
        for frame in codec.decode(packet):
            if frame.pts is None:
                return None
            if frame.pts in wanted_pts:
                found[frame.pts] = frame
        if len(found) == len(wanted_pts):
            return found
    return None


def _decode_all(codec: av.codec.context.CodecContext, packets: list[av.Packet]) -> list[av.VideoFrame]:
    frames: list[av.VideoFrame] = []
    for packet in [*packets, None]:
        try:
            frames.extend(codec.decode(packet))
        except av.FFmpegError:
            continue  # a corrupt packet loses its frame; the frames that do decode still count
    return frames


def _check_span(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, packets: list[av.Packet]
) -> None:
    """`check_complete` on the demuxed packets' timestamps against the container's declared duration."""
    if stream.time_base is None or not container.duration:
        return
    last = max(packets, key=lambda p: p.pts)
    rate = stream.average_rate or stream.guessed_rate
    frame_seconds = float(last.duration * stream.time_base) if last.duration else (1 / float(rate) if rate else 0.0)
    if frame_seconds <= 0:
        return  # no frame duration to judge by
    decoded = float((last.pts - min(p.pts for p in packets)) * stream.time_base) + frame_seconds
    check_complete(decoded, container.duration / av.time_base, frame_seconds)


def decode_clip(
    mp4: bytes,
    frames_per_clip: int,
    frame_step: int,
    generator: torch.Generator,
    *,
    fps: float | None = None,
    min_frames: int = 1,
) -> torch.Tensor:
    """`decode_clip_frames` stacked: (T, H, W, 3) uint8 RGB (same arguments, randomness and errors)."""
    return torch.stack(decode_clip_frames(mp4, frames_per_clip, frame_step, generator, fps=fps, min_frames=min_frames))


def decode_clip_frames(
    mp4: bytes,
    frames_per_clip: int,
    frame_step: int,
    generator: torch.Generator,
    *,
    fps: float | None = None,
    min_frames: int = 1,
) -> list[torch.Tensor]:
    """Decode a random clip of ``frames_per_clip`` frames, ``frame_step`` apart, from an in-memory video.

    Frames are counted from the demuxed packets' timestamps, never from the container header (which can be 0 or
    off by one, PITFALLS 11). Only the GOP holding the clip is decoded, on one thread. If a wanted frame does not
    decode, the whole video is decoded and the clip is drawn again from the frames that did.

    Args:
        mp4: The encoded file (mp4, or anything FFmpeg opens: webm, mkv, a PNG as a 1-frame video).
        frames_per_clip: Frames in the clip, T.
        frame_step: Stride between sampled frames (1 = consecutive).
        generator: Source of the random start (see `clip_indices`).
        fps: Target sampling rate; when set, the stride is `step_for_fps` of the stream's rate and ``frame_step``
            only applies to streams without a rate.
        min_frames: Videos with fewer frames raise (and are skipped by the pipeline) instead of being padded.

    Returns:
        T frames, each (H, W, 3) uint8 RGB; a short video is padded by repeating its last sampled frame. Frames are
        not stacked: `VideoTransform` copies only its crop of each frame, instead of a full-frame stack and then
        the crop (PyAV hands out separate frames anyway).

    Raises:
        ValueError: If the bytes do not open as a video, no frame decodes, the video is shorter than min_frames, or
            it is truncated (`check_complete`: the rule the shard builder rejects files with).
    """
    if frames_per_clip < 1 or frame_step < 1:
        raise ValueError(f"frames_per_clip ({frames_per_clip}) and frame_step ({frame_step}) must be >= 1")
    with _open(mp4) as container:
        if not container.streams.video:
            raise ValueError(f"no video stream in {len(mp4)} bytes")
        stream = container.streams.video[0]
        codec = stream.codec_context
        codec.thread_count = 1  # one decoder thread per dataloader worker; the workers are the parallelism
        try:
            packets = [p for p in container.demux(stream) if p.size > 0]
        except av.FFmpegError as exn:
            raise ValueError(f"cannot demux video ({len(mp4)} bytes): {exn}") from exn
        rate = stream.average_rate or stream.guessed_rate
        frame_step = step_for_fps(float(rate) if rate else None, fps, frame_step)
        if packets and all(p.pts is not None for p in packets):
            sorted_pts = sorted(p.pts for p in packets)
            _check_span(container, stream, packets)
            _check_length(len(sorted_pts), min_frames, len(mp4))
            indices = clip_indices(len(sorted_pts), frames_per_clip, frame_step, generator)
            wanted = [sorted_pts[i] for i in indices]
            try:
                found = _decode_from_keyframe(codec, packets, set(wanted))
            except av.FFmpegError:
                found = None
            if found is not None:
                return _to_rgb([found[p] for p in wanted])
            codec.flush_buffers()
        frames = _decode_all(codec, packets)
        if not frames:
            raise ValueError(f"no decodable video frames in {len(mp4)} bytes ({len(packets)} packets)")
        frames.sort(key=lambda f: f.pts if f.pts is not None else 0)
        _check_length(len(frames), min_frames, len(mp4))
        indices = clip_indices(len(frames), frames_per_clip, frame_step, generator)
        return _to_rgb([frames[i] for i in indices])


def _torchcodec_decoder_class() -> type:
    try:
        from torchcodec.decoders import VideoDecoder
    except (ImportError, RuntimeError, OSError) as exn:
        raise ImportError(
            f"decoder='torchcodec' needs torchcodec and the system FFmpeg libraries ({exn}); "
            "`pip install torchcodec` and `apt-get install ffmpeg`, or use decoder='pyav'"
        ) from exn
    return VideoDecoder


def decode_clip_torchcodec(
    mp4: bytes,
    frames_per_clip: int,
    frame_step: int,
    generator: torch.Generator,
    *,
    fps: float | None = None,
    min_frames: int = 1,
) -> torch.Tensor:
    """`decode_clip` with torchcodec (optional: needs ``pip install torchcodec`` and system FFmpeg shared libraries).

    Uses ``seek_mode="exact"``: the frame count comes from a scan of the packets, not the header (PITFALLS 11), and
    the frames are bit-identical to PyAV's. Same arguments, randomness and result as `decode_clip`.
    """
    VideoDecoder = _torchcodec_decoder_class()
    if frames_per_clip < 1 or frame_step < 1:
        raise ValueError(f"frames_per_clip ({frames_per_clip}) and frame_step ({frame_step}) must be >= 1")
    try:
        decoder = VideoDecoder(
            mp4,
            seek_mode="exact",
            num_ffmpeg_threads=1,
            dimension_order="NHWC",
        )
        metadata = decoder.metadata
        num_frames = metadata.num_frames or 0
        if metadata.duration_seconds is not None and metadata.duration_seconds_from_header and metadata.average_fps:
            check_complete(metadata.duration_seconds, metadata.duration_seconds_from_header, 1 / metadata.average_fps)
        _check_length(num_frames, max(min_frames, 1), len(mp4))
        frame_step = step_for_fps(decoder.metadata.average_fps, fps, frame_step)
        indices = clip_indices(num_frames, frames_per_clip, frame_step, generator)
        return decoder.get_frames_at(indices).data
    except (RuntimeError, ValueError, IndexError) as exn:
        raise ValueError(f"cannot decode video with torchcodec ({len(mp4)} bytes): {exn}") from exn


ClipDecoder = Callable[..., torch.Tensor | list[torch.Tensor]]


def clip_decoder(name: str) -> ClipDecoder:
    """The clip decoding function for ``name``: ``"pyav"`` (default, always installed) or ``"torchcodec"``.

    It returns the clip as `VideoTransform` takes it: a list of T (H, W, 3) frames (PyAV) or one (T, H, W, 3)
    tensor (torchcodec decodes into one).

    Raises:
        ImportError: For ``"torchcodec"`` when it is not installed or finds no FFmpeg (checked here, not per clip).
        ValueError: For another name.
    """
    if name == "pyav":
        return decode_clip_frames
    if name == "torchcodec":
        _torchcodec_decoder_class()
        return decode_clip_torchcodec
    raise ValueError(f"unknown video decoder {name!r}; use 'pyav' or 'torchcodec'")


def encode_mp4(frames: np.ndarray, fps: int, *, gop: int = 16, crf: int = 18, lossless: bool = False) -> bytes:
    """Encode RGB frames to an H.264 mp4 laid out for fast random-clip decoding.

    libx264 (bundled in PyAV's wheels), yuv420p, a keyframe every ``gop`` frames (``-g -keyint_min``, no scene-cut
    keyframes), no B-frames and ``-tune fastdecode``: decoding a clip then costs about ``gop/2`` extra frames
    (PITFALLS 11).

    Args:
        frames: (T, H, W, 3) uint8 RGB; H and W must be even (yuv420p subsamples chroma 2x2).
        fps: Frame rate written in the container.
        gop: Keyframe interval in frames.
        crf: x264 constant rate factor (lower = closer to the input; 18 is visually lossless).
        lossless: encode RGB exactly instead (libx264rgb, qp 0; `crf` unused). For rendered simulator frames, whose
            small coloured objects yuv420p's chroma subsampling smears: the frames a model trains on then equal
            the renders it plans from (Two Rooms: lossy frames moved the encoder's latents 7x more than one step of
            the agent does). Small frames only: the files are several times larger.

    Returns:
        The mp4 file as bytes.

    Raises:
        ValueError: If the array is not (T, H, W, 3) uint8 with T >= 1 and even H, W.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames with T >= 1, got {frames.shape} {frames.dtype}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H and W must be even for yuv420p H.264, got {height}x{width}")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0", "tune": "fastdecode"}
        codec, quality, pix_fmt = (
            ("libx264rgb", {"qp": "0"}, "rgb24") if lossless else ("libx264", {"crf": str(crf)}, "yuv420p")
        )
        stream = container.add_stream(codec, rate=fps, options={**options, **quality, "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = Fraction(1, fps)
        stream.codec_context.thread_count = 1  # writers run one clip per process; threads would oversubscribe
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()
