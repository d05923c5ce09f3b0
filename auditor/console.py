"""What the CLI tells the user while it works, on stderr: a line per step, and
stage 1's progress as a bar on a terminal or, in a CI log or a pipe, a plain
heartbeat line at least every `heartbeat_s` seconds (jobs with a no-output
timeout would otherwise kill an hours-long audit)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

HEARTBEAT_S = 30.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Reporter:
    """`step(msg)`, `start(total)`, `advance(n)` and `resumed(n)`, used as the
    pipeline's callbacks. `bar`: draw a rich progress bar (a terminal); else
    heartbeat lines. Samples resumed from an interrupted run count as done but
    not in the rate, so the time left is this run's own estimate."""

    def __init__(self, stream: TextIO, bar: bool, progress: bool = True, heartbeat_s: float = HEARTBEAT_S,
                 prefix: str = "bye-audit") -> None:
        self._stream, self._bar, self._progress, self._every = stream, bar, progress, heartbeat_s
        self._prefix, self._t0 = prefix, time.monotonic()
        self._done = self._total = self._resumed = 0
        self._announced = self._in_stage1 = False
        self._current, self._since = "", self._t0
        self._started = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rich = None
        self._task = None

    def step(self, msg: str) -> None:
        """A line saying what starts; off a terminal, a heartbeat line every
        `heartbeat_s` while it lasts (a base pass, the heatmaps, the PDF)."""
        self._stop_stage()
        line = f"{self._prefix}: [{_duration(time.monotonic() - self._t0)}] {msg}"
        if self._rich is not None:
            self._rich.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self._stream, flush=True)
        self._current, self._since, self._in_stage1 = msg, time.monotonic(), False
        if self._progress and not self._bar:
            self._run_beat()

    def _run_beat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="bye-audit-heartbeat", daemon=True)
        self._thread.start()

    def start(self, total: int) -> None:
        self._stop_stage()  # the step's heartbeat gives way to stage 1's
        self._done, self._total, self._started = 0, total, time.monotonic()
        self._resumed, self._announced, self._in_stage1 = 0, False, True
        if not self._progress:
            return
        if self._bar:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            # Short columns: the whole bar fits 80 columns.
            # rate and time left are ours: rich's would count resumed samples.
            self._rich = Progress(TextColumn("stage 1"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                  TextColumn("{task.fields[left]}"),
                                  console=Console(file=self._stream), transient=False)
            self._rich.start()
            self._task = self._rich.add_task("stage 1", total=total, rate="", left="")
        else:
            self._run_beat()

    def resumed(self, n: int) -> None:
        """`n` samples taken from a shard an interrupted run saved."""
        with self._lock:
            self._done += n
            self._resumed += n
        if self._rich is not None and self._task is not None:
            self._rich.advance(self._task, n)

    def advance(self, n: int) -> None:
        self._announce()
        with self._lock:
            self._done += n
        if self._rich is not None and self._task is not None:
            self._rich.advance(self._task, n)
            rate, left = self._rate()
            self._rich.update(self._task, rate=f"{rate:.1f}/s" if rate else "",
                              left=f"about {_duration(left)} left" if rate else "")

    def _rate(self) -> tuple[float, float]:
        """(samples per second computed by this run, seconds left); rate 0 before any."""
        with self._lock:
            own, left = self._done - self._resumed, self._total - self._done
        spent = time.monotonic() - self._started
        rate = own / spent if own and spent > 0 else 0.0
        return rate, left / rate if rate else 0.0

    def _announce(self) -> None:
        """Once, when this run resumed samples: say so before its own progress."""
        with self._lock:
            if self._announced or not self._resumed:
                return
            self._announced, resumed, total = True, self._resumed, self._total
        line = (f"{self._prefix}: stage 1: resumed {resumed:,} of {total:,} samples from the shards an "
                f"interrupted run saved; computing the other {total - resumed:,}")
        if self._rich is not None:
            self._rich.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self._stream, flush=True)

    def heartbeat_line(self) -> str:
        with self._lock:
            done, total, resumed = self._done, self._total, self._resumed
        line = f"stage 1: {done:,}/{total:,} samples ({100 * done / total if total else 100:.0f}%)"
        if resumed:
            line += f" ({resumed:,} resumed)"
        rate, left = self._rate()
        if rate:
            line += f", {rate:.2f} samples/s, about {_duration(left)} left"
        return line

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            now = time.monotonic()
            what = (self.heartbeat_line() if self._in_stage1
                    else f"still {self._current} ({_duration(now - self._since)} so far)")
            print(f"{self._prefix}: [{_duration(now - self._t0)}] {what}", file=self._stream, flush=True)

    def _stop_stage(self) -> None:
        self._announce()  # every sample resumed: said here
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._rich is not None:
            self._rich.stop()
            self._rich = self._task = None

    def close(self) -> None:
        self._stop_stage()


@contextmanager
def reporter(stream: TextIO, progress: bool, prefix: str = "bye-audit") -> Iterator[Reporter]:
    """A Reporter drawing a bar when `stream` is a terminal; stopped on exit."""
    r = Reporter(stream, bar=stream.isatty(), progress=progress, prefix=prefix)
    try:
        yield r
    finally:
        r.close()
