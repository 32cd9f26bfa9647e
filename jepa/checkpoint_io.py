"""Read checkpoint files safely: one clear error naming the file and what it holds, and no non-finite weights.

Every loader of the project (`jepa.checkpoints`, the launchers' ``checkpoint=`` and ``ckpt_path=``) reads files
through `read_checkpoint`. torch's own errors for a file that is not a checkpoint do not name it and mislead: random
bytes raise an ``UnpicklingError`` advising ``weights_only=False`` (never needed for our files or the released ones,
and unsafe), an empty file a bare ``EOFError``, a text file ``KeyError: 101``.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message names it and says what it holds."""


class LoadedCheckpoint(dict):
    """A checkpoint dict that remembers the file it came from (``path``), so later errors can name it."""

    def __init__(self, contents: Mapping[str, Any], path: str | Path) -> None:
        super().__init__(contents)
        self.path = str(path)


def describe_file(path: str | Path) -> str:
    """What a file that failed to load holds, in a few words (e.g. "an empty file (0 bytes)")."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "an empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return (
                f"a truncated or damaged torch.save archive ({size} bytes; its end is missing: an interrupted copy?)"
            )
        return f"a torch.save archive ({size} bytes) whose contents are damaged"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"{size} bytes of binary data that are not a torch checkpoint"
    first = text.strip().splitlines()[0][:60] if text.strip() else ""
    return f"text ({size} bytes, starting {first!r}), not a torch checkpoint"


def read_checkpoint(path: str | Path, mmap: bool = False) -> LoadedCheckpoint:
    """``torch.load(path, weights_only=True)`` onto the CPU, with one clear error for anything but a checkpoint dict.

    Args:
        path: The file.
        mmap: Map tensors from the file instead of reading them (cheap validation of a large file); torch.save
            archives only.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        CheckpointError: If it is not a readable checkpoint (the message names the path and what it holds).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "not found"
        raise FileNotFoundError(f"checkpoint {what}: {path}")
    try:
        with warnings.catch_warnings():
            # bytes that happen to start like a pickle header make torch warn about the protocol before it fails;
            # the error below already says what the file is
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exn:
        found = re.search(r"GLOBAL ([\w.]+)", str(exn))
        if found and zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path} holds Python objects that a safe (weights-only) load refuses, e.g. {found.group(1)}: save "
                "checkpoints with plain dicts, lists, numbers and tensors (an OmegaConf config: "
                "OmegaConf.to_container(cfg, resolve=True))"
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint: it is {describe_file(path)}") from None
    except (EOFError, RuntimeError, KeyError, ValueError, OSError, IndexError, zipfile.BadZipFile):
        raise CheckpointError(f"{path} is not a readable checkpoint: it is {describe_file(path)}") from None
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not a checkpoint (a dict of state dicts)")
    return LoadedCheckpoint(ckpt, path)


def nonfinite_tensors(state_dict: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """``{key: (non-finite values, values)}`` for every floating tensor of ``state_dict`` that has NaN or inf."""
    bad = {}
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                bad[key] = (int(value.numel() - finite.sum()), value.numel())
    return bad


def check_finite(state_dict: Mapping[str, Any], where: str) -> None:
    """Raise if any floating tensor holds NaN or inf: such weights come from a diverged run and compute only NaN.

    Raises:
        CheckpointError: Naming ``where`` (the file and which weights), how many values and which tensors.
    """
    bad = nonfinite_tensors(state_dict)
    if bad:
        count = sum(n for n, _ in bad.values())
        total = sum(v.numel() for v in state_dict.values() if isinstance(v, torch.Tensor) and v.is_floating_point())
        raise CheckpointError(
            f"{where} holds non-finite weights: {count:,} of {total:,} values are NaN or inf, in {len(bad)} tensors "
            f"(e.g. {next(iter(bad))}); the training that wrote it diverged: load an earlier checkpoint"
        )
