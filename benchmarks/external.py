"""Import modules from a foreign checkout (e.g. facebookresearch/vjepa2) given on the command line.

The reference-comparison benchmarks import the reference's own modules (`src.*`, `app.*`, the notebooks' `utils.*`)
from a checkout at a path named at run time. Instead of putting that path on `sys.path`, a meta-path finder scoped to
the checkout resolves exactly the top-level names that exist there; submodules follow the packages' own `__path__`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


class CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds top-level modules and packages under `roots` (searched in order), and nothing else."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = [str(root) for root in roots]

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is not None:  # a submodule: its parent package's __path__ already locates it
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, self.roots)


def importable_checkout(path: str | Path, *subdirs: str) -> CheckoutFinder:
    """Makes the top-level modules of the checkout at `path` (and of its `subdirs`) importable, ahead of installed
    packages of the same name, as the reference's own scripts see them when run from its root."""
    root = Path(path).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"no checkout at {root}")
    finder = CheckoutFinder([root, *(root / sub for sub in subdirs)])
    sys.meta_path.insert(0, finder)
    return finder
