"""The exit code a release gate sees: the verdict, optionally tolerating a few flags.

`--fail-on verdict` (default): a fail verdict exits 1.
`--fail-on count:N`: exits 1 only when more than N samples are flagged.
`--fail-on fraction:F`: exits 1 only when more than F (0..1) of the analysed samples are flagged.
Pass exits 0 and inconclusive exits 3 whatever the rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import VERDICT_EXIT, ExitCode


@dataclass(frozen=True)
class FailOn:
    kind: str  # "verdict" | "count" | "fraction"
    threshold: float = 0.0
    text: str = "verdict"  # as given, e.g. "count:3"


def parse_fail_on(text: str) -> FailOn:
    """'verdict' | 'count:N' | 'fraction:F'; ValueError naming the value otherwise."""
    kind, _, value = text.partition(":")
    try:
        if kind == "verdict" and not value:
            return FailOn("verdict", 0.0, text)
        if kind == "count" and int(value) >= 0:
            return FailOn("count", int(value), text)
        if kind == "fraction" and 0.0 <= float(value) <= 1.0:
            return FailOn("fraction", float(value), text)
    except ValueError:
        pass
    raise ValueError(f"fail_on {text!r} is not one of 'verdict', 'count:N' (N >= 0), 'fraction:F' (0 <= F <= "
                     "1)")


@dataclass(frozen=True)
class Gate:
    rule: str
    exit_code: ExitCode
    tripped: bool  # False when a fail verdict was tolerated by the rule
    reason: str


def gate(verdict: str, n_flagged: int, n_analysed: int, rule: FailOn) -> Gate:
    """The exit code of an audit under `rule` (parse_fail_on; the config's `gate.rule`)."""
    code = VERDICT_EXIT[verdict]
    fail_on = rule.text
    if verdict != "fail" or rule.kind == "verdict":
        return Gate(fail_on, code, verdict == "fail", f"verdict {verdict}")
    if rule.kind == "count":
        over = n_flagged > rule.threshold
        what = f"{n_flagged} flagged vs at most {int(rule.threshold)} tolerated"
    else:
        share = n_flagged / n_analysed if n_analysed else 1.0
        over, what = share > rule.threshold, f"{share:.2%} flagged vs at most {rule.threshold:.2%} tolerated"
    return Gate(fail_on, ExitCode.FAIL if over else ExitCode.PASS, over,
                f"verdict fail; {what} (--fail-on {fail_on})")
