"""One progress bar per phase, and the libraries' own chatter silenced while the workstation commands run.

On a terminal the bar redraws in place; in a log (CI, a pipe) it prints at 0, 25, 50, 75 and 100%.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Bar:
    def __init__(self, prefix: str, label: str, total: int, stream=sys.stderr) -> None:
        self.prefix, self.label, self.total, self.stream = prefix, label, max(total, 1), stream
        self.done, self.shown = 0, -1
        self.live = stream.isatty()
        self.advance(0)

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        if self.live:
            filled = int(30 * self.done / self.total)
            end = "\n" if self.done == self.total else ""
            print(f"\r{self.prefix}: {self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}", end=end,
                  file=self.stream, flush=True)
            return
        quarter = 4 * self.done // self.total
        if quarter != self.shown:
            self.shown = quarter
            print(f"{self.prefix}: {self.label} {self.done}/{self.total}", file=self.stream, flush=True)


@contextmanager
def quiet() -> Iterator[None]:
    """Library warnings and logging below ERROR off (lightning's GPU/TPU lines and tips, deprecation notes...);
    inspectd's own lines are prints, they stay. (Lightning sets its loggers' levels when imported, so
    per-logger levels would not hold: logging is disabled below ERROR for the block instead.)"""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def lightning_bar(prefix: str, label: str) -> Callable:
    """A lightning Callback class drawing one Bar over the training batches (imported lazily: lightning is heavy)."""
    from lightning.pytorch.callbacks import Callback

    class BatchBar(Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.bar = Bar(prefix, label, int(trainer.num_training_batches))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.bar.advance()

    return BatchBar()
