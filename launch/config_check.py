"""Check a composed config before anything is created: types, ranges, required values, files, shards.

`check_before_hydra` runs on the command line, before Hydra makes the run folder, so a wrong value stops in a
second with one message instead of after folders, a wandb run and generated data exist (``data.batch_size=abc``
used to fail inside a DataLoader worker). The same `check_config` runs again inside the launchers (tests and sweep
jobs compose their own configs) and in `launch/submit.py` (a wrong value then fails at submission, not in the queue).

Types come from the signatures of the ``_target_`` each node instantiates (``batch_size: int`` refuses ``'abc'``),
so new arguments are checked without a table; ranges and a few relations between values come from `RANGES` and
`check_relations`.
"""

from __future__ import annotations

import collections.abc
import copy
import difflib
import importlib
import inspect
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """One or more config values are wrong; the message names each key, its value and what it should be."""


# argument name -> (check, what it must be); applies to that argument of any `_target_`
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{
        name: (lambda v: v >= 1, "an integer >= 1")
        for name in (
            "batch_size",
            "frames_per_clip",
            "frame_step",
            "steps_per_epoch",
            "crop_size",
            "img_size",
            "patch_size",
            "num_frames",
            "tubelet_size",
            "embed_dim",
            "depth",
            "num_heads",
            "predictor_embed_dim",
            "accumulate_grad_batches",
            "log_every_n_steps",
            "num_nodes",
            "patience",
            "every_n_train_steps",
        )
    },  # fmt: skip
    "num_workers": (lambda v: v >= 0, "an integer >= 0"),
    "max_steps": (lambda v: v >= 1, "an integer >= 1 (the schedules are fractions of it)"),
    "gradient_clip_val": (lambda v: v > 0, "a number > 0, or null for no clipping"),
    "min_frames": (lambda v: v >= 1, "an integer >= 1"),
    "fps": (lambda v: v > 0, "a number > 0, or null"),
}
# values the launcher passes itself (not read from the config): not "missing" when left at ???
FILLED_BY_LAUNCHER = {"probe_head.embed_dim"}
# keys naming a file that must exist before anything starts, and what to do when it does not
FILE_KEYS = {
    "ckpt_path": "pass an existing checkpoint, or leave ckpt_path=null to resume from the run's own last.ckpt",
    "checkpoint": "pass one of our .ckpt files or a released V-JEPA 2 .pt",
    "model.encoder_checkpoint": (
        "pretrain the encoder first (`python launch/train.py +experiment=tworooms_vjepa` for tworooms_ac) or "
        "point model.encoder_checkpoint at a .ckpt of ours or a released V-JEPA 2 .pt"
    ),
}


def _nodes(cfg: Any, path: str = "") -> Iterator[tuple[str, Mapping]]:
    """Every mapping with a ``_target_`` in a resolved container, with its dotted path."""
    if isinstance(cfg, Mapping):
        if "_target_" in cfg:
            yield path, cfg
        for key, value in cfg.items():
            if key != "hydra":
                yield from _nodes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(cfg, list | tuple):
        for i, value in enumerate(cfg):
            yield from _nodes(value, f"{path}.{i}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a config value can be passed for an argument annotated ``hint`` (lenient where unsure)."""
    if hint in (Any, inspect.Parameter.empty) or value is None:
        return True
    if hint is type(None):
        return False
    if isinstance(value, Mapping) and "_target_" in value:
        return True  # an object Hydra builds: its own node is checked on its own
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str | int | float) and not isinstance(value, bool)
    container = origin or hint
    if container in (list, tuple, collections.abc.Sequence):
        return isinstance(value, list | tuple)
    if container in (dict, collections.abc.Mapping):
        return isinstance(value, Mapping)
    return True


def _signature(target: str) -> tuple[inspect.Signature, dict[str, Any]] | None:
    """The signature of a ``_target_`` and its resolved annotations (None when it cannot be imported)."""
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
        signature = inspect.signature(obj)
    except (ImportError, AttributeError, ValueError, TypeError):
        return None
    try:
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except Exception:  # noqa: BLE001 - annotations naming TYPE_CHECKING-only types: no type checks for this target
        hints = {}
    return signature, hints


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, Mapping) else "{...}"


def check_node(path: str, node: Mapping) -> list[str]:
    """Type, range and unknown-key problems of one ``_target_`` node."""
    found = _signature(str(node["_target_"]))
    if found is None:
        return []
    signature, hints = found
    params = signature.parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    problems = []
    where = f"{path}." if path else ""
    for key, value in node.items():
        if key.startswith("_") or value == "???":
            continue
        if key not in params:
            if not takes_kwargs:
                close = difflib.get_close_matches(key, list(params), n=1)
                hint = f" (did you mean {where}{close[0]}?)" if close else ""
                problems.append(f"{where}{key} is not an argument of {node['_target_']}{hint}")
            continue
        hint = hints.get(key, params[key].annotation)
        if not _fits(value, hint):
            problems.append(f"{where}{key}={_show(value)}: expected {_type_name(hint)} ({node['_target_']})")
            continue
        rule = RANGES.get(key)
        if rule is not None and isinstance(value, int | float) and not isinstance(value, bool) and not rule[0](value):
            problems.append(f"{where}{key}={value!r} must be {rule[1]}")
    return problems


def _type_name(hint: Any) -> str:
    """``int``, ``int or null``, ``one of 64, '32-true', ...``: an annotation as a user reads it."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    choices = [c for a in args if typing.get_origin(a) is typing.Literal for c in typing.get_args(a)]
    names = ["null" if a is type(None) else _plain_name(a) for a in args if typing.get_origin(a) is not typing.Literal]
    if choices:
        names.insert(0, "one of " + ", ".join(repr(c) for c in choices))
    return " or ".join(names)


def _plain_name(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if typing.get_origin(hint) is None else None
    return text or str(hint).replace("typing.", "")


def check_relations(cfg: Mapping) -> list[str]:
    """Relations between values that no single argument shows (shapes the model needs)."""
    problems = []
    for name in ("encoder", "predictor", "ac_predictor"):
        node = cfg.get(name)
        if not isinstance(node, Mapping):
            continue
        dim = node.get("predictor_embed_dim", node.get("embed_dim"))
        heads, size, patch = node.get("num_heads"), node.get("img_size"), node.get("patch_size")
        if isinstance(dim, int) and isinstance(heads, int) and heads >= 1 and dim % heads:
            problems.append(f"{name}: width {dim} is not divisible by num_heads={heads}")
        if isinstance(size, int) and isinstance(patch, int) and patch >= 1 and size % patch:
            problems.append(f"{name}.img_size={size} is not a multiple of patch_size={patch}")
        frames, tubelet = node.get("num_frames"), node.get("tubelet_size")
        if isinstance(frames, int) and isinstance(tubelet, int) and tubelet >= 1 and frames % tubelet:
            problems.append(f"{name}.num_frames={frames} is not a multiple of tubelet_size={tubelet}")
    return problems


def check_files(cfg: Mapping) -> list[str]:
    """Checkpoints named in the config exist; data shards resolve (`jepa.data.shards.resolve_shards`)."""
    from jepa.data.shards import resolve_shards

    problems = []
    for key, advice in FILE_KEYS.items():
        value: Any = cfg
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str) and value != "???" and not Path(value).expanduser().is_file():
            what = "a folder, not a checkpoint file" if Path(value).is_dir() else "checkpoint not found"
            problems.append(f"{key}: {what}: {value}; {advice}")
    data = cfg.get("data")
    specs = []
    if isinstance(data, Mapping) and str(data.get("_target_", "")).endswith("DataModule"):
        specs.append(("data.shards", data.get("shards")))
        for i, spec in enumerate(data.get("datasets") or []):
            if isinstance(spec, Mapping):
                specs.append((f"data.datasets.{i}.shards", spec.get("shards")))
    for key, spec in specs:
        if spec is None or spec == "???":
            continue
        try:
            resolve_shards(spec)
        except (FileNotFoundError, ValueError) as err:
            problems.append(f"{key}: {err}")
    return problems


def check_config(cfg: DictConfig, filled_by_launcher: set[str] = FILLED_BY_LAUNCHER, files: bool = True) -> None:
    """Raise `ConfigError` listing every wrong value of a composed config (nothing is created or started).

    Args:
        cfg: The composed config.
        filled_by_launcher: Keys the launcher sets itself (left at ``???`` in the config).
        files: Also check that named checkpoints exist and data shards resolve.

    Raises:
        ConfigError: One line per problem: the key, its value, and what it must be.
    """
    if "hydra" in cfg:  # composed with Hydra's own node (a sweep): its values are Hydra's to check
        cfg = copy.deepcopy(cfg)
        OmegaConf.set_struct(cfg, False)
        del cfg["hydra"]
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as err:
        raise ConfigError(f"the config does not resolve: {err}") from None
    problems = [
        f"{path} is required (set {path}=...)"
        for path, value in _leaves(resolved)
        if value == "???" and path not in filled_by_launcher
    ]
    node_problems = [(path, p) for path, node in _nodes(resolved) for p in check_node(path, node)]
    # A wrong value copied by interpolation (`${trainer.max_steps}`) is reported where it was set, not at every copy.
    direct = [p for path, p in node_problems if not _interpolated(cfg, p.split("=")[0].split(" ")[0])]
    problems += direct or [p for _, p in node_problems]
    problems += check_relations(resolved)
    if files and not problems:
        problems += check_files(resolved)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _interpolated(cfg: DictConfig, key: str) -> bool:
    """Whether the config value at dotted ``key`` is an interpolation of another value."""
    parent, _, leaf = key.rpartition(".")
    try:
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return node is not None and OmegaConf.is_interpolation(node, leaf)
    except (OmegaConfBaseException, ValueError, TypeError):
        return False


def _leaves(cfg: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(cfg, Mapping):
        for key, value in cfg.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(cfg, list | tuple):
        for i, value in enumerate(cfg):
            yield from _leaves(value, f"{path}.{i}")
    else:
        yield path, cfg


# Hydra flags after which the command line is not a plain run with overrides: leave those to Hydra.
_HYDRA_FLAGS = {"-m", "--multirun", "-c", "--cfg", "-h", "--help", "--hydra-help", "-i", "--info", "-sc",
                "--shell-completion", "-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir",
                "-p", "--package", "--resolve", "-r", "--run", "--experimental-rerun"}  # fmt: skip


def check_before_hydra(config_name: str, argv: list[str] | None = None) -> None:
    """On the command line, before Hydra creates anything: compose the config and `check_config` it.

    Exits with status 2 and one message when the config is wrong. Anything this cannot compose (a sweep, Hydra's own
    flags, a bad override) is left to Hydra, which reports it itself.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    args = sys.argv[1:] if argv is None else argv
    if any(a.split("=")[0] in _HYDRA_FLAGS for a in args):
        return
    try:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name, overrides=args)
    except (HydraException, OmegaConfBaseException, ValueError):
        return
    try:
        check_config(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
