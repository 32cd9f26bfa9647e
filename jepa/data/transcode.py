"""Re-encode any video or image FFmpeg reads into short mp4 clips laid out for fast random-clip decoding.

The source is decoded once, streamed frame by frame (a long video never sits in memory), resampled to a fixed frame
rate by timestamps, resized to a fixed short side in YUV (no RGB round trip) and written by libx264 with a short
keyframe interval, no B-frames and ``-tune fastdecode`` (PITFALLS 11).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from av.video.reformatter import Interpolation, VideoReformatter

from jepa.data.decode import MIN_COMPLETE_FRACTION, check_complete

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".webm", ".avi", ".mkv", ".mov", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".gif")


@dataclass(frozen=True)
class EncodeSettings:
    """How clips are written: the builder's defaults give ~86 clips/s per worker for 16-frame clips (BENCHMARKS.md).

    Args:
        fps: Output frame rate; store at the rate you sample at (then ``frame_step`` 1-2), not at 30 fps.
        short_side: Output short side in pixels (even; the long side keeps the aspect ratio, rounded to even).
            Smaller sources are not upscaled.
        clip_seconds: Split videos into clips of this length (the last one may be shorter); None keeps them whole.
        min_seconds: Clips shorter than this are dropped (a whole video shorter than it is reported as skipped).
        gop: Keyframe interval in frames; a random clip decodes about gop/2 extra frames.
        crf: x264 constant rate factor (x264's default is 23). 26 with GOP 8 gives ~20% more 16-frame clips/s
            per worker than 23 with GOP 16 (85.7 vs 71.2), 19% fewer bytes, for 1.5 dB PSNR (38.8 vs 40.3 dB on
            real footage; BENCHMARKS.md).
        preset: x264 speed preset.
        min_duration_fraction: A video whose decoded duration is below this fraction of its header's is truncated.
    """

    fps: float = 8.0
    short_side: int = 256
    clip_seconds: float | None = None
    min_seconds: float = 0.0
    gop: int = 8
    crf: int = 26
    preset: str = "fast"
    min_duration_fraction: float = MIN_COMPLETE_FRACTION


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at ``short_side`` (never upscaled), both even."""
    scale = min(1.0, short_side / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class Mp4ClipWriter:
    """Streaming H.264 mp4 writer for yuv420p frames of one size: ``add`` frames, then ``finish`` for the bytes."""

    def __init__(self, width: int, height: int, settings: EncodeSettings) -> None:
        self._buffer = io.BytesIO()
        self._container = av.open(self._buffer, mode="w", format="mp4")
        rate = Fraction(settings.fps).limit_denominator(1001)
        options = {"g": str(settings.gop), "keyint_min": str(settings.gop), "sc_threshold": "0", "bf": "0"}
        options |= {"tune": "fastdecode", "crf": str(settings.crf), "preset": settings.preset}
        self._stream = self._container.add_stream("libx264", rate=rate, options=options)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.codec_context.time_base = 1 / rate
        self._stream.codec_context.thread_count = 1  # one file per worker process; threads would oversubscribe
        self.num_frames = 0

    def add(self, frame: av.VideoFrame) -> None:
        frame.pts, frame.time_base = self.num_frames, self._stream.codec_context.time_base
        self._container.mux(self._stream.encode(frame))
        self.num_frames += 1

    def finish(self) -> bytes:
        self._container.mux(self._stream.encode(None))
        self._container.close()
        return self._buffer.getvalue()


def resampled_frames(path: str, settings: EncodeSettings, info: dict[str, Any]) -> Iterator[av.VideoFrame]:
    """Decode ``path`` and yield yuv420p frames at ``settings.fps`` and ``settings.short_side``.

    Output frame k (time k / fps from the first frame) is the latest source frame shown at that time, so a faster
    source drops frames and a slower one repeats them. ``info`` receives the source's width, height, fps and decoded
    duration.

    Raises:
        ValueError: If the file does not open as a video, fails to decode, has no frames, or is truncated.
    """
    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError, OSError) as exn:
        raise ValueError(f"cannot open: {exn}") from exn
    with container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        rate = stream.average_rate or stream.guessed_rate
        frame_duration = Fraction(1, 1) / rate if rate else Fraction(1, 1) / Fraction(settings.fps)
        out_step = 1 / Fraction(settings.fps).limit_denominator(1001)
        reformatter = VideoReformatter()
        size: tuple[int, int] | None = None
        t0: Fraction | None = None
        previous: tuple[Fraction, av.VideoFrame] | None = None
        k = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    t = frame.pts * frame.time_base
                else:
                    t = (previous[0] + frame_duration) if previous else Fraction(0)
                t0 = t if t0 is None else t0
                if size is None:
                    size = output_size(frame.width, frame.height, settings.short_side)
                    info.update(source_width=frame.width, source_height=frame.height)
                    info.update(source_fps=round(float(rate), 3) if rate else None)
                if previous is not None:
                    while k * out_step < t - t0:
                        yield previous[1]
                        k += 1
                out = reformatter.reformat(
                    frame, width=size[0], height=size[1], format="yuv420p", interpolation=Interpolation.AREA, threads=1
                )
                previous = (t, out)
        except av.FFmpegError as exn:
            raise ValueError(f"decoding failed: {exn}") from exn
        if previous is None or t0 is None:
            raise ValueError("no decodable frames")
        end = previous[0] - t0 + frame_duration
        info["duration"] = round(float(end), 3)
        declared = float(container.duration) / av.time_base if container.duration else 0.0
        # the loader applies the same rule to the clips it reads (jepa.data.decode.check_complete)
        check_complete(float(end), declared, float(frame_duration), settings.min_duration_fraction)
        while k * out_step < end:
            yield previous[1]
            k += 1


def transcode(path: str, settings: EncodeSettings) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Re-encode one video or image into mp4 clips.

    Args:
        path: Any file FFmpeg reads (mp4, webm, avi, mkv, mov, mpg, ..., or an image as a 1-frame video).
        settings: Output layout.

    Yields:
        ``(mp4 bytes, meta)`` per clip; meta holds ``fps, n_frames, height, width, clip_index, start_time, image`` and
        the source's ``source_fps, source_width, source_height, duration``. Nothing is yielded before the whole source
        decoded without error (clips are buffered), so a file fails as a whole.

    Raises:
        ValueError: If the file is unreadable, truncated or shorter than ``settings.min_seconds``.
    """
    clip_frames = round(settings.clip_seconds * settings.fps) if settings.clip_seconds else None
    min_frames = max(1, round(settings.min_seconds * settings.fps))
    info: dict[str, Any] = {}
    clips: list[tuple[bytes, dict[str, Any]]] = []
    writer: Mp4ClipWriter | None = None
    total = 0

    def close(w: Mp4ClipWriter) -> None:
        data = w.finish()
        if w.num_frames >= min_frames:
            start = (total - w.num_frames) / settings.fps
            meta = {"fps": settings.fps, "n_frames": w.num_frames, "height": w_size[1], "width": w_size[0]}
            clips.append((data, {**meta, "clip_index": len(clips), "start_time": round(start, 3)}))

    for frame in resampled_frames(path, settings, info):
        if writer is None:
            w_size = (frame.width, frame.height)
            writer = Mp4ClipWriter(frame.width, frame.height, settings)
        writer.add(frame)
        total += 1
        if clip_frames is not None and writer.num_frames == clip_frames:
            close(writer)
            writer = None
    if writer is not None:
        close(writer)
    if total < min_frames or not clips:
        raise ValueError(f"too short: {total} frames at {settings.fps} fps < min_seconds={settings.min_seconds}")
    image = os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS
    for data, meta in clips:
        yield data, {**meta, **info, "image": image}
