"""One progress bar per phase, and the libraries' own chatter silenced while the workstation commands run.

On a terminal the bar redraws in place; in a log (CI, a pipe) it prints at 0, 25, 50, 75 and 100%, and every phase
prints at least every 10 s while it runs, however long one of its steps takes.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HEARTBEAT_SECONDS = 10.0  # no phase stays silent longer (issue 18)


class Bar:
    """A phase's progress: ``done/total`` (or, with no total, the time it has taken), and a line at least every ``every``
    seconds while it runs as a context manager, so a long step never leaves the terminal or the log silent.

    On a terminal it redraws in place; in a log it prints at 0, 25, 50, 75 and 100% and between them on the clock."""

    def __init__(self, prefix: str, label: str, total: int | None = None, stream=None, every: float = HEARTBEAT_SECONDS) -> None:
        self.prefix, self.label, self.total, self.stream = prefix, label, None if total is None else max(total, 1), stream or sys.stderr
        self.every, self.done, self.shown = every, 0, -1
        self.live = self.stream.isatty()
        self.started = self.printed = time.monotonic()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.ticker: threading.Thread | None = None
        if self.total is not None:
            self.advance(0)

    def __enter__(self) -> Bar:
        self.ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self.ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        if self.ticker is not None:
            self.ticker.join()
        if exc[0] is None and self.total is None:
            self._print(f"{self.label}: done in {time.monotonic() - self.started:.0f} s", final=True)
        elif self.live and self.total is not None and self.done < self.total:
            print(file=self.stream, flush=True)

    def advance(self, steps: int = 1) -> None:
        if self.total is None:
            return
        self.done = min(self.total, self.done + steps)
        if self.live:
            self._print(self._text(), final=self.done == self.total)
            return
        quarter = 4 * self.done // self.total
        if quarter != self.shown:
            self.shown = quarter
            self._print(self._text())

    def _text(self, clock: bool = False) -> str:
        elapsed = f" ({time.monotonic() - self.started:.0f} s)" if clock else ""
        if self.total is None:
            return f"{self.label}{elapsed or ' ...'}"
        if self.live:
            filled = int(30 * self.done / self.total)
            return f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}{elapsed}"
        return f"{self.label} {self.done}/{self.total}{elapsed}"

    def _tick(self) -> None:
        while not self.stopped.wait(min(1.0, self.every)):
            if time.monotonic() - self.printed >= self.every:
                self._print(self._text(clock=True))

    def _print(self, text: str, final: bool = False) -> None:
        with self.lock:
            if self.live:
                print(f"\r{self.prefix}: {text}\x1b[K", end="\n" if final else "", file=self.stream, flush=True)
            else:
                print(f"{self.prefix}: {text}", file=self.stream, flush=True)
            self.printed = time.monotonic()


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
        """Batches, then (still ticking) the Gaussian fit anomalib's Padim does at the epoch's end."""

        bar: Bar | None = None

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.bar = Bar(prefix, label, int(trainer.num_training_batches)).__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.bar.advance()

        def on_train_end(self, trainer, pl_module) -> None:
            self.close()

        def on_exception(self, trainer, pl_module, exception) -> None:
            self.close()

        def close(self) -> None:
            if self.bar is not None:
                self.bar.__exit__(None, None, None)
                self.bar = None

    return BatchBar()
