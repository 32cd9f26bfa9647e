"""DataLoader workers leave SIGTERM and SIGINT to the main process.

A signal sent to a process group (Ctrl-C in a terminal, ``timeout``, ``kill -- -PGID``, SLURM at a time limit or on
``scancel``) reaches the DataLoader workers as well as the trainer. torch's workers die on SIGTERM from anyone but
their parent and quietly end on SIGINT, so the main process then fails with "DataLoader worker ... killed by signal"
before it can save (PITFALLS 13). Ignoring both in the workers lets the main process save at the end of the step
(`jepa.tasks.callbacks.PreemptionCheckpoint`) and shut its workers down as usual; a worker still exits when its
parent dies (torch watches for that).

One exit path needs help: workers still alive when the interpreter exits (a fit ended by an exception keeps its
persistent workers; a loader iterated by hand and dropped mid-pass) would hang it, since multiprocessing's exit hook
terminates daemon children with SIGTERM and then joins them. An exit hook here, which runs before that one, kills the
daemon children that ignore SIGTERM.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # registers multiprocessing's exit hook before ours, so ours runs first (LIFO)
import signal
from collections.abc import Callable


class StopSignalsIgnored:
    """A DataLoader ``worker_init_fn`` that ignores SIGTERM and SIGINT in the worker, then calls ``then`` if given.

    A class, not a closure, so that it pickles for spawn/forkserver workers.
    """

    def __init__(self, then: Callable[[int], None] | None = None) -> None:
        self.then = then

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.then is not None:
            self.then(worker_id)


def _ignores_sigterm(pid: int) -> bool:
    """Whether process `pid` ignores SIGTERM (Linux: its /proc status; elsewhere assumed not)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except OSError:
        pass
    return False


@atexit.register
def _kill_children_that_ignore_sigterm() -> None:
    for child in multiprocessing.active_children():
        if child.daemon and child.pid is not None and _ignores_sigterm(child.pid):
            child.kill()
