"""Errors that reach the user as one line and a documented exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every `bye-audit` command (README, "Exit codes")."""

    PASS = 0  # no backdoor evidence
    FAIL = 1  # samples flagged
    INPUT_ERROR = 2  # usage or input error
    INCONCLUSIVE = 3  # too little could be analysed, or ambiguous evidence
    INTERNAL_ERROR = 4  # a bug or an unforeseen failure: one line, the traceback in a log file
    # Stopped from outside, by the shell's convention 128 + the signal's number:
    # never 0-4, so a gate cannot read an interruption as a verdict.
    BROKEN_PIPE = 141  # the reader of stdout went away (SIGPIPE)
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM (a CI job's timeout, `kill`)


class Interrupted(BaseException):
    """SIGTERM, raised where the process is (a BaseException, like
    KeyboardInterrupt, so that no `except Exception` below swallows it)."""

    def __init__(self, signal_name: str, exit_code: ExitCode) -> None:
        super().__init__(signal_name)
        self.signal_name, self.exit_code = signal_name, exit_code


class AuditInputError(Exception):
    """A bad input: the message names the file, record or value and what to do."""

    exit_code = ExitCode.INPUT_ERROR


class OutputWriteError(AuditInputError):
    """An output could not be written (read-only folder, full disk): the message
    names the file and the system's reason; nothing half-written is left."""


VERDICT_EXIT = {"pass": ExitCode.PASS, "fail": ExitCode.FAIL, "inconclusive": ExitCode.INCONCLUSIVE}
