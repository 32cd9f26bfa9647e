"""Build webdataset shards of re-encoded mp4 clips from folders, globs or CSV lists of videos and images.

Inputs are listed once, in a fixed order, and cut into groups of ``files_per_shard``: group i becomes
``shard-%06d.tar`` i plus its record ``shard-%06d.json`` (clips, hours, bytes, skipped files). Files are transcoded in
parallel worker processes; the main process writes each shard to a temporary name and renames it when complete, then
writes its record. Running the build again keeps every shard whose record exists and whose tar checks out (present,
of the recorded size, readable, with the recorded samples: `shard_problem`) and rebuilds the others, so an
interrupted build resumes and a deleted or damaged shard is rebuilt.
The manifest (``manifest.json``: shard list with sample counts) is written last and is what a data config points at.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import multiprocessing
import os
import re
import tarfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import webdataset as wds
from tqdm.auto import tqdm

from jepa.data.transcode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, EncodeSettings, transcode

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
BUILD_RECORD = "build.json"
FORMAT = "jepa-shards-v1"


@dataclass(frozen=True)
class SourceFile:
    """One input: its path, optional label and the name recorded as ``source`` in the samples' json."""

    path: str
    label: int | str | None = None
    source: str = ""


def _parse_label(text: str, where: str) -> int:
    """An integer class index, as the V-JEPA 2 list format has it; anything else is an error naming the line."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"{where}: label {text!r} is not an integer class index; the list format is `path label` with an "
            "integer label (or `path` alone); for class names use folders and --label-from-folder"
        ) from None


def read_csv_list(path: str) -> list[SourceFile]:
    """Read a V-JEPA 2 style list: one ``path [label]`` per line, space-, tab- or comma-separated, no header.

    The label is the text after the line's last separator, an integer class index; a line that names an existing
    file as a whole has no label (so paths with spaces work). Relative paths are taken relative to the list's folder; blank lines and
    ``#`` comments are ignored.
    """
    root = os.path.dirname(os.path.abspath(path))
    files = []
    with open(path) as f:
        lines = [line.strip() for line in f]
    for number, line in enumerate(lines, start=1):
        if not line or line.startswith("#"):
            continue
        fields = re.split(r"[,\t ]+(?=[^,\t ]+$)", line)
        if len(fields) == 2 and not os.path.isfile(os.path.join(root, line)):
            name, label = fields[0], _parse_label(fields[1], f"{path} line {number}")
        else:
            name, label = line, None
        full = name if os.path.isabs(name) else os.path.join(root, name)
        files.append(SourceFile(full, label, name))
    return files


def list_inputs(inputs: Sequence[str], label_from_folder: bool = False) -> tuple[list[SourceFile], list[str]]:
    """Expand folders (recursive), globs and ``.csv``/``.txt`` lists into a sorted, de-duplicated file list.

    Args:
        inputs: Folders, globs, single files or CSV lists.
        label_from_folder: Label each file of a folder input by its first sub-folder (Kinetics layout
            ``root/class_name/video.mp4``): class names are numbered in sorted order.

    Returns:
        The files and the class names (empty unless ``label_from_folder``).

    Raises:
        FileNotFoundError: If an input does not exist or matches nothing (one message naming them all).
        ValueError: If a list has a label that is not an integer (the message names the file and line).
    """
    extensions = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
    files: list[SourceFile] = []
    missing: list[str] = []
    for item in inputs:
        item = os.path.expanduser(item)
        if os.path.isdir(item):
            found = []
            for folder, _, names in os.walk(item):
                found += [os.path.join(folder, n) for n in names if os.path.splitext(n)[1].lower() in extensions]
            for path in sorted(found):
                rel = os.path.relpath(path, item)
                label = rel.split(os.sep)[0] if label_from_folder and os.sep in rel else None
                files.append(SourceFile(path, label, rel))
        elif item.lower().endswith((".csv", ".txt")) and os.path.isfile(item):
            files += read_csv_list(item)
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            files += [SourceFile(p, None, p) for p in matches if os.path.isfile(p)]
            if not matches:
                missing.append(item)
        elif os.path.isfile(item):
            files.append(SourceFile(item, None, item))
        else:
            missing.append(item)
    if missing:
        raise FileNotFoundError(f"shard builder inputs not found: {', '.join(missing)}; pass folders, globs or lists")
    classes: list[str] = []
    if label_from_folder:
        classes = sorted({str(f.label) for f in files if f.label is not None})
        index = {name: i for i, name in enumerate(classes)}
        files = [dataclasses.replace(f, label=index.get(str(f.label))) for f in files]
    seen: set[str] = set()
    unique = [f for f in files if not (f.path in seen or seen.add(f.path))]
    return unique, classes


def _transcode_one(job: tuple[int, SourceFile, EncodeSettings]) -> tuple[int, list[tuple[bytes, dict]], str | None]:
    """Worker: all clips of one file, or the reason it was skipped."""
    index, source, settings = job
    try:
        if os.path.getsize(source.path) == 0:
            raise ValueError("empty file (0 bytes)")
        clips = list(transcode(source.path, settings))
    except (ValueError, OSError) as exn:
        return index, [], f"{type(exn).__name__}: {exn}"
    return index, clips, None


def _shard_names(out_dir: str, shard: int) -> tuple[str, str]:
    base = os.path.join(out_dir, f"shard-{shard:06d}")
    return base + ".tar", base + ".json"


def shard_problem(tar_path: str, record: dict[str, Any]) -> str | None:
    """Why a shard its record calls complete is not (missing, other size, unreadable, samples missing), or None.

    Reads only the tar headers (seeking over the members), not the videos.
    """
    if record.get("samples", 0) == 0:
        return None  # every file of the group was skipped: no tar was written
    if not os.path.isfile(tar_path):
        return "missing"
    size = os.path.getsize(tar_path)
    if size != record.get("bytes"):
        return f"{size} bytes, the build wrote {record.get('bytes')}"
    try:
        with tarfile.open(tar_path) as tar:
            keys = Counter(m.name.split(".", 1)[0] for m in tar.getmembers() if m.isfile())
    except (tarfile.TarError, OSError, EOFError) as exn:
        return f"unreadable tar ({exn})"
    complete = sum(1 for count in keys.values() if count >= 2)  # an mp4 and a json per sample
    if complete != record["samples"]:
        return f"{complete} complete samples, the build wrote {record['samples']}"
    return None


def _complete_record(out_dir: str, shard: int) -> dict[str, Any] | None:
    """The record of a shard that is complete on disk, else None (its leftovers removed, so it is rebuilt)."""
    tar_path, record_path = _shard_names(out_dir, shard)
    if not os.path.isfile(record_path):
        return None
    try:
        with open(record_path) as f:
            record = json.load(f)
        problem = shard_problem(tar_path, record)
    except (ValueError, KeyError, TypeError) as exn:
        problem = f"unreadable record {record_path} ({exn})"
    if problem is None:
        return record
    log.warning("rebuilding %s: %s", os.path.basename(tar_path), problem)
    for stale in (record_path, tar_path):
        if os.path.isfile(stale):
            os.remove(stale)
    return None


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


class _ShardSink:
    """Collects one group's clips, in input order, into a tar written under a temporary name."""

    def __init__(self, out_dir: str, shard: int) -> None:
        self.tar_path, self.record_path = _shard_names(out_dir, shard)
        self._tmp = self.tar_path + ".tmp"
        self._writer: wds.TarWriter | None = None
        self.record: dict[str, Any] = {"shard": shard, "samples": 0, "seconds": 0.0, "bytes": 0, "skipped": []}

    def add(self, index: int, source: SourceFile, clips: list[tuple[bytes, dict]], error: str | None) -> None:
        if error is not None:
            self.record["skipped"].append({"path": source.path, "reason": error})
            return
        if self._writer is None:
            self._writer = wds.TarWriter(self._tmp)
        for data, meta in clips:
            meta = {**meta, "source": source.source or source.path}
            if source.label is not None:
                meta["label"] = source.label
            self._writer.write({"__key__": f"f{index:09d}c{meta['clip_index']:05d}", "mp4": data, "json": meta})
            self.record["samples"] += 1
            self.record["seconds"] += meta["n_frames"] / meta["fps"]

    def close(self) -> dict[str, Any]:
        if self._writer is not None:
            self._writer.close()
            os.replace(self._tmp, self.tar_path)
            self.record["bytes"] = os.path.getsize(self.tar_path)
            self.record["url"] = os.path.basename(self.tar_path)
        _write_json(self.record_path, self.record)  # last: its presence marks the shard complete
        return self.record


def _check_build_record(out_dir: str, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to mix shards of another build (other inputs or settings) into ``out_dir``."""
    path = os.path.join(out_dir, BUILD_RECORD)
    if os.path.isfile(path) and not overwrite:
        with open(path) as f:
            previous = json.load(f)
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise ValueError(
                f"{out_dir} holds shards of another build (different {', '.join(changed)}); "
                "use a new output folder, or --overwrite to rebuild it"
            )
    if overwrite:
        for stale in glob.glob(os.path.join(out_dir, "shard-*")) + [os.path.join(out_dir, MANIFEST)]:
            if os.path.exists(stale):
                os.remove(stale)
    _write_json(path, settings)


def build_shards(
    inputs: Sequence[str],
    out_dir: str,
    settings: EncodeSettings | None = None,
    files_per_shard: int = 100,
    workers: int | None = None,
    label_from_folder: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Transcode ``inputs`` into ``out_dir/shard-%06d.tar`` and write ``out_dir/manifest.json``; resumable.

    Args:
        inputs: Folders, globs, files or CSV lists (`list_inputs`).
        out_dir: Output folder (created).
        settings: Clip encoding (`EncodeSettings` defaults: 8 fps, short side 256, GOP 8, crf 26, fastdecode).
        files_per_shard: Input files per shard (a split video puts all its clips in its shard).
        workers: Transcoding processes; None = one per CPU.
        label_from_folder: Label files by their class folder (`list_inputs`).
        overwrite: Delete the shards of a previous build in ``out_dir`` first.
        progress: Show a tqdm bar over input files.

    Returns:
        The manifest: ``shards`` (``[{"url", "samples"}]``), ``num_samples``, ``hours``, ``bytes``, ``skipped``
        (``[{"path", "reason"}]``), ``classes``, ``settings`` and this run's ``built_shards`` / ``reused_shards``.

    Raises:
        FileNotFoundError: If an input is missing.
        ValueError: If ``out_dir`` is a file or holds a build with other inputs or settings, or a list has a
            non-integer label.
    """
    settings = settings or EncodeSettings()
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} is a file: pass a folder for the shards (it is created if missing)")
    files, classes = list_inputs(inputs, label_from_folder)
    if not files:
        raise FileNotFoundError(f"no video or image files in {list(inputs)}; supported: {VIDEO_EXTENSIONS}")
    out_dir = os.path.abspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exn:  # a parent that is a file, no permission, ...
        raise ValueError(f"cannot create the output folder {out_dir}: {exn.strerror}") from None
    digest = hashlib.sha1("\n".join(f"{f.path}\t{f.label}" for f in files).encode()).hexdigest()
    build = {"format": FORMAT, "inputs_sha1": digest, "num_inputs": len(files), "files_per_shard": files_per_shard}
    build |= {"settings": dataclasses.asdict(settings), "classes": classes}
    _check_build_record(out_dir, build, overwrite)

    groups = [range(i, min(i + files_per_shard, len(files))) for i in range(0, len(files), files_per_shard)]
    records: dict[int, dict[str, Any]] = {}
    todo = []
    for shard in range(len(groups)):
        record = _complete_record(out_dir, shard)
        if record is not None:
            records[shard] = record
        else:
            todo.append(shard)
    jobs = [(i, files[i], settings) for shard in todo for i in groups[shard]]
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="transcoding", unit="file", disable=not progress)
    for shard, record in _run_jobs(jobs, groups, todo, files, out_dir, workers, bar):
        records[shard] = record
    bar.close()
    return _write_manifest(out_dir, build, [records[s] for s in range(len(groups))], len(todo), start)


def _run_jobs(jobs, groups, todo, files, out_dir, workers, bar) -> Iterator[tuple[int, dict[str, Any]]]:
    """Transcode in a process pool (ordered results), streaming each finished group into its shard."""
    workers = workers or os.cpu_count() or 1
    pool = multiprocessing.Pool(workers) if workers > 1 and len(jobs) > 1 else None
    results = pool.imap(_transcode_one, jobs, chunksize=1) if pool else map(_transcode_one, jobs)
    try:
        for shard in todo:
            sink = _ShardSink(out_dir, shard)
            for _ in groups[shard]:
                index, clips, error = next(results)
                sink.add(index, files[index], clips, error)
                if error is not None:
                    log.warning("skipped %s: %s", files[index].path, error)
                bar.update(1)
            yield shard, sink.close()
    finally:
        if pool is not None:
            pool.terminate()


def _reason_kind(reason: str) -> str:
    """``"ValueError: cannot open: [Errno ..."`` -> ``"cannot open"``: the reason without exception type and details."""
    parts = reason.split(": ")
    return parts[1].split(":")[0] if len(parts) > 1 else reason


def _write_manifest(
    out_dir: str, build: dict[str, Any], records: list[dict[str, Any]], built: int, start: float
) -> dict[str, Any]:
    shards = [{"url": r["url"], "samples": r["samples"]} for r in records if r["samples"] > 0]
    skipped = [s for r in records for s in r["skipped"]]
    manifest = {
        "format": FORMAT,
        "shards": shards,
        "num_samples": sum(s["samples"] for s in shards),
        "hours": round(sum(r["seconds"] for r in records) / 3600, 6),
        "bytes": sum(r["bytes"] for r in records),
        "skipped": skipped,
        "skip_reasons": dict(Counter(_reason_kind(s["reason"]) for s in skipped)),
        "classes": build["classes"],
        "settings": build["settings"],
        "built_shards": built,
        "reused_shards": len(records) - built,
        "seconds": round(time.perf_counter() - start, 2),
    }
    _write_json(os.path.join(out_dir, MANIFEST), manifest)
    return manifest


def summary(manifest: dict[str, Any], out_dir: str, max_listed: int = 20) -> str:
    """A human-readable report of a build: clips, hours, bytes, shards, skipped files with reasons."""
    lines = [
        f"{manifest['num_samples']} clips, {manifest['hours']:.3f} h, {manifest['bytes'] / 2**20:.1f} MiB in "
        f"{len(manifest['shards'])} shards ({manifest['built_shards']} built, {manifest['reused_shards']} already "
        f"complete) in {manifest['seconds']:.1f} s -> {os.path.join(out_dir, MANIFEST)}",
    ]
    skipped = manifest["skipped"]
    if skipped:
        lines.append(f"skipped {len(skipped)} files ({manifest['skip_reasons']}):")
        lines += [f"  {s['path']}: {s['reason']}" for s in skipped[:max_listed]]
        if len(skipped) > max_listed:
            lines.append(f"  ... and {len(skipped) - max_listed} more, all listed in the manifest's 'skipped'")
    return "\n".join(lines)
