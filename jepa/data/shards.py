"""Shard lists: expand brace patterns and globs, check local paths, write webdataset shards."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable
from typing import Any

import webdataset as wds
from webdataset.shardlists import expand_urls

MAKE_SHARDS_HINT = (
    "build shards from your videos with `python data/make_shards.py VIDEO_DIR --out DIR` (then "
    "data.shards=DIR/manifest.json) or point data.shards at existing .tar files; leave data.shards=null to use the "
    "embedded synthetic dataset (`python data/make_synthetic.py --out DIR` writes more of it)"
)

# Remote specs are opened lazily by webdataset's gopen; checking them here would need the network.
_REMOTE_PREFIXES = ("pipe:", "http://", "https://", "s3://", "gs://", "ais://")


def _is_remote(url: str) -> bool:
    return url.startswith(_REMOTE_PREFIXES)


def manifest_shards(path: str) -> list[str]:
    """The shard paths listed in a ``manifest.json`` of `jepa.data.builder` or `jepa.data.synthetic`.

    Entries are names relative to the manifest's folder (or absolute paths / urls), either plain strings or
    ``{"url": ..., "samples": ...}`` records.

    Raises:
        ValueError: If the file is not such a manifest (one message naming it).
    """
    try:
        with open(path) as f:
            entries = json.load(f)["shards"]
        names = [e if isinstance(e, str) else e["url"] for e in entries]
    except (ValueError, KeyError, TypeError) as exn:
        raise ValueError(f"{path} is not a shard manifest (expected a 'shards' list): {exn}") from exn
    folder = os.path.dirname(os.path.abspath(path))
    return [n if _is_remote(n) or os.path.isabs(n) else os.path.join(folder, n) for n in names]


def resolve_shards(spec: str | list[str]) -> list[str]:
    """Expand a shard spec into a flat list of shard urls, checking that local ones exist.

    Each entry may be a brace pattern (``shard-{000000..000007}.tar``), a glob (``dir/*.tar``), a ``::``-separated
    list, a plain path, a ``manifest.json`` written by the shard builder or the builder's output folder (its
    manifest, or the ``.tar`` files in a folder without one), or a ``pipe:``/http(s) url (passed through unchecked;
    s3 works through ``pipe:aws s3 cp s3://bucket/shard-000000.tar -``).

    Args:
        spec: One spec string or a list of them.

    Returns:
        The expanded shard urls, in the given order (globs sorted).

    Raises:
        FileNotFoundError: If a local path does not exist or a glob matches nothing (one message naming all of them).
        ValueError: If the spec expands to no shard at all.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    missing: list[str] = []
    manifests: list[str] = []  # manifests listing shards that are gone
    for item in specs:
        for url in expand_urls(str(item)):
            if _is_remote(url):
                urls.append(url)
                continue
            url = os.path.expanduser(url)
            if glob.has_magic(url):
                matches = sorted(glob.glob(url))
                if not matches:
                    missing.append(url)
                urls.extend(matches)
            elif os.path.isdir(url):  # a builder's output folder: its manifest, else the tars in it
                manifest = os.path.join(url, "manifest.json")
                listed = manifest_shards(manifest) if os.path.isfile(manifest) else sorted(glob.glob(f"{url}/*.tar"))
                if not listed:
                    missing.append(f"{url} (a folder with neither manifest.json nor .tar files)")
                gone = [p for p in listed if not _is_remote(p) and not os.path.isfile(p)]
                missing += gone
                manifests += [manifest] if gone else []
                urls.extend(listed)
            elif url.endswith(".json") and os.path.isfile(url):
                listed = manifest_shards(url)
                gone = [p for p in listed if not _is_remote(p) and not os.path.isfile(p)]
                missing += gone
                manifests += [url] if gone else []
                urls.extend(listed)
            elif os.path.isfile(url):
                urls.append(url)
            else:
                missing.append(url)
    if missing:
        shown = ", ".join(missing[:5]) + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
        if manifests:
            raise FileNotFoundError(
                f"video shards not found: {shown}, listed in {', '.join(manifests)}; run the data/make_shards.py "
                "command that wrote it again: it rebuilds missing and damaged shards"
            )
        raise FileNotFoundError(f"video shards not found: {shown}; {MAKE_SHARDS_HINT}")
    if not urls:
        raise ValueError(f"shard spec {spec!r} expands to no shards; {MAKE_SHARDS_HINT}")
    return urls


def write_shards(samples: Iterable[dict[str, Any]], pattern: str, maxcount: int) -> list[str]:
    """Write samples into numbered tar shards with ``webdataset.ShardWriter``.

    Args:
        samples: Dicts with a ``__key__`` (no dots: webdataset splits member names at the first dot) and one
            entry per file, e.g. ``{"__key__": "clip000001", "mp4": bytes, "json": dict}``.
        pattern: printf-style output path, e.g. ``"out/shard-%06d.tar"``; its folder is created.
        maxcount: Samples per shard.

    Returns:
        The written shard paths, in order (no empty trailing shard).

    Raises:
        ValueError: If a key contains a dot.
    """
    folder = os.path.dirname(pattern)
    if folder:
        os.makedirs(folder, exist_ok=True)
    written: list[str] = []
    count = 0
    # ShardWriter opens its first tar eagerly, so an empty input leaves one empty shard behind; drop it below.
    with wds.ShardWriter(pattern, maxcount=maxcount, verbose=0, post=written.append) as sink:
        for sample in samples:
            key = sample.get("__key__")
            if not isinstance(key, str) or "." in key:
                raise ValueError(f"sample key {key!r} must be a string without dots")
            sink.write(sample)
            count += 1
    if count == 0:
        for path in written:
            os.remove(path)
        return []
    return written
