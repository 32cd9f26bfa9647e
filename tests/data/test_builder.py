"""The shard builder: many containers, images and real footage in; bad files reported and skipped; resumable."""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from jepa.data.builder import build_shards, list_inputs
from jepa.data.decode import decode_clip, encode_mp4
from jepa.data.pipeline import VideoClipDataset
from jepa.data.shards import resolve_shards
from jepa.data.transcode import EncodeSettings, transcode
from jepa.data.transforms import VideoTransform

REPO = Path(__file__).resolve().parents[2]
SMALL = EncodeSettings(fps=8, short_side=32)

# container -> (codec, source frame rate)
CONTAINERS = {
    "mp4": ("libx264", 24),
    "webm": ("libvpx", 24),
    "avi": ("mpeg4", 24),
    "mkv": ("libx264", 24),
    "mov": ("mpeg4", 24),
    "mpg": ("mpeg1video", 24),
}


def ramp_video(num_frames: int = 48, size: int = 48) -> np.ndarray:
    """(T, S, S, 3) uint8 frames of constant gray level 10 + 5 * i, so a decoded frame tells its source index."""
    levels = (10 + 5 * np.arange(num_frames)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, size, size, 3)).copy()


def ramp_index(frame: np.ndarray) -> int:
    return round((float(frame.mean()) - 10) / 5)


def write_video(path: Path, frames: np.ndarray, codec: str, fps: int) -> None:
    """Encode (T, H, W, 3) uint8 frames with PyAV into whatever container the suffix names."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec != "libx264":
            stream.bit_rate = 2_000_000
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def sources(tmp_path_factory, bikes_mp4) -> Path:
    """A Kinetics-style folder: class ``ramps`` (6 containers), ``images`` (png, jpg), ``street`` (bikes.mp4),
    ``broken`` (a truncated mp4, a zero-length mp4, a text file named .avi)."""
    root = tmp_path_factory.mktemp("sources")
    for name in ("ramps", "images", "street", "broken"):
        (root / name).mkdir()
    ramp = ramp_video()  # 2 s at 24 fps
    for ext, (codec, fps) in CONTAINERS.items():
        write_video(root / "ramps" / f"ramp.{ext}", ramp, codec, fps)
    rng = np.random.default_rng(0)
    for ext in ("png", "jpg"):
        Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(root / "images" / f"photo.{ext}")
    shutil.copy(bikes_mp4, root / "street" / "bikes.mp4")
    mp4 = (root / "ramps" / "ramp.mp4").read_bytes()
    (root / "broken" / "truncated.mp4").write_bytes(mp4[: len(mp4) // 2])
    (root / "broken" / "empty.mp4").write_bytes(b"")
    (root / "broken" / "notes.avi").write_text("not a video at all\n" * 20)
    return root


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("built")
    manifest = build_shards([str(sources)], str(out), SMALL, files_per_shard=4, workers=2, label_from_folder=True)
    return out, manifest


def test_build_reports_bad_files_and_counts_the_rest(built, sources):
    out, manifest = built
    assert manifest["classes"] == ["broken", "images", "ramps", "street"]
    skipped = {Path(s["path"]).name: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"truncated.mp4", "empty.mp4", "notes.avi"}
    assert "empty file" in skipped["empty.mp4"] and "cannot open" in skipped["notes.avi"]
    assert manifest["skip_reasons"] == {"empty file (0 bytes)": 1, "cannot open": 2}
    assert manifest["num_samples"] == 6 + 2 + 1
    assert manifest["num_samples"] == sum(s["samples"] for s in manifest["shards"])
    assert manifest["bytes"] == sum(os.path.getsize(out / s["url"]) for s in manifest["shards"])
    # six 2 s ramps (MPEG-PS timestamps add one frame), two 1-frame images (1/8 s each) and 10 s of street footage
    assert manifest["hours"] * 3600 == pytest.approx(6 * 2 + 1 / 8 + 2 / 8 + 10, abs=0.01)
    assert json.loads((out / "manifest.json").read_text())["shards"] == manifest["shards"]


def test_shards_read_back_with_shapes_labels_and_metadata(built):
    out, _ = built
    dataset = VideoClipDataset(str(out / "manifest.json"), 4, 1, VideoTransform(crop_size=16), shuffle_buffer=0)
    samples = list(itertools.islice(iter(dataset), 36))
    assert {s["video"].shape for s in samples} == {(3, 4, 16, 16)}
    assert {s["label"] for s in samples} == {1, 2, 3}  # images, ramps, street (broken files left no sample)
    with open(out / "shard-000000.json") as f:
        assert json.load(f)["samples"] > 0
    import webdataset as wds

    metas = [
        json.loads(s["json"]) for s in wds.WebDataset(str(out / "shard-{000000..000002}.tar"), shardshuffle=False)
    ]
    by_source = {m["source"]: m for m in metas}
    street = by_source[os.path.join("street", "bikes.mp4")]
    assert (street["source_width"], street["source_height"], street["source_fps"]) == (640, 272, 25.0)
    assert (street["height"], street["width"], street["n_frames"], street["fps"]) == (32, 76, 80, 8)
    image = by_source[os.path.join("images", "photo.png")]
    assert image["image"] and image["n_frames"] == 1 and (image["height"], image["width"]) == (32, 48)
    for ext in CONTAINERS:
        ramp = by_source[os.path.join("ramps", f"ramp.{ext}")]
        frames = 17 if ext == "mpg" else 16  # MPEG-PS timestamps put the last frame 1/24 s later
        assert (ramp["n_frames"], ramp["height"], ramp["width"], ramp["label"]) == (frames, 32, 32, 2), ext


def test_street_clip_has_a_keyframe_every_gop_frames_and_no_b_frames(built):
    # the random-clip decode cost rests on this layout (PITFALLS 11): ~gop/2 frames decoded before a clip starts
    out, _ = built
    import webdataset as wds

    samples = wds.WebDataset(str(out / "shard-{000000..000002}.tar"), shardshuffle=False)
    mp4 = next(s["mp4"] for s in samples if json.loads(s["json"])["source"].endswith("bikes.mp4"))
    with av.open(io.BytesIO(mp4)) as container:
        packets = [p for p in container.demux(video=0) if p.size > 0]
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    assert SMALL.gop == EncodeSettings().gop == 8
    gaps = [b - a for a, b in zip(keyframes, [*keyframes[1:], len(packets)], strict=True)]
    assert keyframes[0] == 0 and max(gaps) <= 8 and len(packets) == 80, (keyframes, len(packets))
    assert [p.pts for p in packets] == sorted(p.pts for p in packets)  # decode order = display order: no B-frames


def test_resampling_keeps_every_third_frame_of_24fps(sources):
    for ext in ("mp4", "webm", "mkv"):
        [(mp4, meta)] = transcode(str(sources / "ramps" / f"ramp.{ext}"), SMALL)
        clip = decode_clip(mp4, 16, 1, torch.Generator().manual_seed(0)).numpy()
        assert [ramp_index(f) for f in clip] == list(range(0, 48, 3)), ext
        assert meta["duration"] == pytest.approx(2.0)


def test_long_videos_split_into_clips(tmp_path):
    video = tmp_path / "long.mp4"
    video.write_bytes(encode_mp4(ramp_video(40), fps=4))  # 10 s at 4 fps, resampled to 8 fps
    clips = list(transcode(str(video), EncodeSettings(fps=8, short_side=32, clip_seconds=4, min_seconds=1.5)))
    assert [m["n_frames"] for _, m in clips] == [32, 32, 16]
    assert [m["start_time"] for _, m in clips] == [0.0, 4.0, 8.0]
    first = decode_clip(clips[1][0], 4, 2, torch.Generator().manual_seed(0), min_frames=32).numpy()
    assert 16 <= ramp_index(first[0]) < 32  # the second clip starts 4 s (16 source frames) in
    dropped = list(transcode(str(video), EncodeSettings(fps=8, short_side=32, clip_seconds=4, min_seconds=2.5)))
    assert len(dropped) == 2
    with pytest.raises(ValueError, match="too short"):
        list(transcode(str(video), EncodeSettings(fps=8, short_side=32, min_seconds=11)))


def test_truncated_faststart_mp4_is_detected(tmp_path, gray_video):
    """An mp4 with its index in front opens fine and only fails (or ends early) mid-stream."""
    source = tmp_path / "long.mp4"
    with av.open(str(source), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 48, 48, "yuv420p"
        for array in np.random.default_rng(0).integers(0, 255, (96, 48, 48, 3), dtype=np.uint8):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    data = source.read_bytes()
    assert len(list(transcode(str(source), SMALL))) == 1
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated|decoding failed"):
        list(transcode(str(cut), SMALL))


def test_builder_and_loader_agree_on_what_a_usable_video_is(sources, tmp_path):
    """Every file the builder turns into clips, the loader reads; every file the builder rejects (truncated, empty,
    not a video), the loader rejects too, instead of padding what is left of it."""
    files = sorted(p for p in sources.rglob("*") if p.is_file())
    cut = tmp_path / "cut_faststart.mp4"  # index in front: opens fine, ends at half of its declared duration
    with av.open(str(tmp_path / "whole.mp4"), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 48, 48, "yuv420p"
        for array in np.random.default_rng(0).integers(0, 255, (96, 48, 48, 3), dtype=np.uint8):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    whole = (tmp_path / "whole.mp4").read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    verdicts = {}
    for path in [*files, cut]:
        try:
            list(transcode(str(path), SMALL))
            builder = True
        except ValueError:
            builder = False
        try:
            decode_clip(path.read_bytes(), 16, 1, torch.Generator().manual_seed(0))
            loader = True
        except ValueError:
            loader = False
        verdicts[path.name] = (builder, loader)
    assert all(builder == loader for builder, loader in verdicts.values()), verdicts
    assert sum(builder for builder, _ in verdicts.values()) == len(CONTAINERS) + 3  # ramps, 2 images, bikes
    assert not any(verdicts[name][0] for name in ("truncated.mp4", "empty.mp4", "notes.avi", "cut_faststart.mp4"))


def test_rebuild_resumes_and_refuses_other_settings(sources, tmp_path):
    out = tmp_path / "out"
    inputs = [str(sources / "ramps"), str(sources / "images")]
    first = build_shards(inputs, str(out), SMALL, files_per_shard=3, workers=1, progress=False)
    assert (first["built_shards"], first["reused_shards"], first["num_samples"]) == (3, 0, 8)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    os.remove(out / "shard-000001.json")  # as if the build died while writing shard 1
    again = build_shards(inputs, str(out), SMALL, files_per_shard=3, workers=1, progress=False)
    assert (again["built_shards"], again["reused_shards"]) == (1, 2)
    assert again["shards"] == first["shards"]
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    assert after["shard-000000.tar"] == mtimes["shard-000000.tar"] != after["shard-000001.tar"]
    with pytest.raises(ValueError, match="another build.*settings"):
        build_shards(inputs, str(out), EncodeSettings(fps=4, short_side=32), files_per_shard=3, progress=False)


def test_deleted_and_truncated_shards_are_rebuilt(sources, tmp_path, caplog):
    """The builder's records alone do not make a shard complete: a deleted or cut tar is rebuilt on the next run."""
    out = tmp_path / "out"
    inputs = [str(sources / "ramps"), str(sources / "images")]
    first = build_shards(inputs, str(out), SMALL, files_per_shard=3, workers=1, progress=False)
    (out / "shard-000000.tar").unlink()
    data = (out / "shard-000001.tar").read_bytes()
    (out / "shard-000001.tar").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileNotFoundError, match=r"shard-000000\.tar, listed in .*manifest\.json; run the data/make_"):
        resolve_shards(str(out))  # data.shards=<the builder folder> reads its manifest
    again = build_shards(inputs, str(out), SMALL, files_per_shard=3, workers=1, progress=False)
    assert (again["built_shards"], again["reused_shards"]) == (2, 1)
    assert "rebuilding shard-000000.tar: missing" in caplog.text
    assert f"rebuilding shard-000001.tar: {len(data) // 2} bytes, the build wrote {len(data)}" in caplog.text
    assert again["shards"] == first["shards"] and again["num_samples"] == 8
    for entry in again["shards"]:  # every tar the manifest lists is there, whole
        with tarfile.open(out / entry["url"]) as tar:
            assert len(tar.getmembers()) == 2 * entry["samples"]
    third = build_shards(inputs, str(out), SMALL, files_per_shard=3, workers=1, progress=False)
    assert (third["built_shards"], third["reused_shards"]) == (0, 3)
    assert resolve_shards(str(out)) == [str(out / e["url"]) for e in third["shards"]]
    (out / "manifest.json").unlink()  # a folder of tars without a manifest: its tars
    assert resolve_shards(str(out)) == sorted(str(p) for p in out.glob("*.tar"))
    with pytest.raises(FileNotFoundError, match="neither manifest.json nor .tar files"):
        resolve_shards(str(tmp_path))


def test_csv_list_with_labels(tmp_path, gray_video):
    for i in range(3):
        (tmp_path / f"v{i}.mp4").write_bytes(encode_mp4(gray_video(8), fps=8))
    (tmp_path / "list.csv").write_text("# path label\nv0.mp4 5\nv1.mp4,7\n\nv2.mp4\n")
    files, _ = list_inputs([str(tmp_path / "list.csv")])
    assert [(Path(f.path).name, f.label) for f in files] == [("v0.mp4", 5), ("v1.mp4", 7), ("v2.mp4", None)]
    manifest = build_shards([str(tmp_path / "list.csv")], str(tmp_path / "out"), SMALL, workers=1, progress=False)
    dataset = VideoClipDataset(str(tmp_path / "out" / "manifest.json"), 2, 1, VideoTransform(crop_size=16))
    assert manifest["num_samples"] == 3
    assert {s["label"] for s in itertools.islice(iter(dataset), 20)} == {5, 7, -1}


def test_non_integer_label_is_an_error_naming_the_line(tmp_path, gray_video):
    (tmp_path / "v0.mp4").write_bytes(encode_mp4(gray_video(8), fps=8))
    (tmp_path / "list.csv").write_text("v0.mp4 3\nv0.mp4 cat\n")
    with pytest.raises(ValueError, match=r"list\.csv line 2: label 'cat' is not an integer class index"):
        list_inputs([str(tmp_path / "list.csv")])


def test_missing_input_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_shards([str(tmp_path / "nowhere")], str(tmp_path / "out"), progress=False)


def test_cli_prints_summary(sources, tmp_path):
    out = tmp_path / "cli"
    args = [
        str(sources / "broken"),
        str(sources / "images"),
        "--out",
        str(out),
        "--short-side",
        "32",
        "--workers",
        "1",
    ]
    proc = subprocess.run(
        [sys.executable, str(REPO / "data" / "make_shards.py"), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 clips" in proc.stdout and "skipped 3 files" in proc.stdout and "empty.mp4" in proc.stdout
    assert (out / "manifest.json").is_file()
    # --out naming a file: one line, no traceback
    args[args.index("--out") + 1] = str(out / "manifest.json")
    proc = subprocess.run(
        [sys.executable, str(REPO / "data" / "make_shards.py"), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        == f"error: --out {out / 'manifest.json'} is a file: pass a folder for the shards (it is created if missing)"
    )
