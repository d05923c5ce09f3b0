"""A checkpoint's chat template, rendered within bounds.

The template is code from the checkpoint's author: Jinja that transformers
runs in its sandbox, which limits what the code can reach but not how long it
runs or how much it writes (two nested `range(100000)` loops never return).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

TEMPLATE_SECONDS = 10.0  # a real template renders in about a millisecond
TEMPLATE_MAX_CHARS = 100_000  # what a template may add around the instruction


class TemplateLimitError(Exception):
    """The chat template ran longer, or wrote more, than the bounds allow."""


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise TemplateLimitError inside the block once `seconds` have passed.

    A timer signal interrupts pure-Python code (which compiled Jinja is);
    signals reach only the main thread, so elsewhere (e.g. a Ray worker's
    thread) the block runs unbounded: the CLI's up-front check on the main
    thread has refused such a template before stage 1 starts.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise TemplateLimitError(f"{what} did not finish within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def render_bounded(render: Callable[[], str], prompt: str) -> str:
    """`render()` (a chat template applied to `prompt`) within TEMPLATE_SECONDS,
    its text at most TEMPLATE_MAX_CHARS longer than the prompt."""
    with time_limit(TEMPLATE_SECONDS, "the chat template"):
        text = render()
    if len(text) > len(prompt) + TEMPLATE_MAX_CHARS:
        raise TemplateLimitError(f"the chat template wrote {len(text):,} characters around a "
                                 f"{len(prompt):,}-character instruction (at most {TEMPLATE_MAX_CHARS:,} "
                                 "allowed)")
    return text
