"""DataLoader workers leave SIGTERM and SIGINT to the main process.

A signal sent to a process group (Ctrl-C in a terminal, ``timeout``, ``kill -- -PGID``, SLURM at a time limit or on
``scancel``) reaches the DataLoader workers as well as the trainer. torch's workers die on SIGTERM from anyone but
their parent and quietly end on SIGINT, so the main process then fails with "DataLoader worker ... killed by signal"
before it can save (PITFALLS 13). Ignoring both in the workers lets the main process save at the end of the step
(`jepa.tasks.callbacks.PreemptionCheckpoint`) and shut its workers down as usual; a worker still exits when its
parent dies (torch watches for that).
"""

from __future__ import annotations

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
