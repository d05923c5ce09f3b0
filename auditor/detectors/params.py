"""A detector's parameters, declared once: each field of its frozen `Params`
record carries its help, bounds or choices (`param`), and everything else
reads that declaration: the record's own check (`check`), the CLI's options
(one `--name` per parameter, generated from the registry), the config's
error messages and `docs/cli.md`'s table (`table`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    """One parameter: its name, default, help and allowed values."""

    name: str
    default: Any
    help: str
    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def kind(self) -> type:
        return type(self.default)

    def bounds(self) -> str:
        """The allowed values in words, e.g. "in (0, 0.5]", ">= 1", "one of paper, reference"."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        low = None if self.ge is None and self.gt is None else (
            f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}")
        high = None if self.le is None and self.lt is None else (
            f"{self.le:g}]" if self.le is not None else f"{self.lt:g})")
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if self.ge is not None else "> ") + low[1:]
        if high:
            return ("<= " if self.le is not None else "< ") + high[:-1]
        return ""

    def allows(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


def param(default: Any, help: str, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None,
          choices: tuple[str, ...] | None = None) -> Any:
    """A `Params` field with its declaration (dataclasses.field metadata)."""
    return dataclasses.field(default=default, metadata={"spec": dict(help=help, ge=ge, gt=gt, le=le, lt=lt,
                                                                     choices=choices)})


def specs(params_type: type) -> tuple[Spec, ...]:
    """Every declared parameter of a `Params` record, in field order."""
    out = []
    for f in dataclasses.fields(params_type):
        if "spec" not in f.metadata:
            raise TypeError(f"{params_type.__name__}.{f.name}: declare it with detectors.params.param(...)")
        out.append(Spec(f.name, f.default, **f.metadata["spec"]))
    return tuple(out)


def check(record: Any) -> None:
    """ValueError naming the first parameter outside its declared bounds, by its CLI flag."""
    for s in specs(type(record)):
        value = getattr(record, s.name)
        kinds = (int, float) if s.kind is float else s.kind  # an int is a float's value too
        if not isinstance(value, kinds) or (isinstance(value, bool) and s.kind is not bool):
            raise ValueError(f"{s.flag}: expected a {s.kind.__name__}, got {value!r}")
        if not s.allows(value):
            raise ValueError(f"{s.flag} must be {s.bounds()}, got {value!r}")


def table(registry: dict[str, type]) -> str:
    """docs/cli.md's table of every detector's parameters (Markdown)."""
    lines = ["| option | method | default | allowed | what it sets |", "|---|---|---|---|---|"]
    for name, detector in registry.items():
        for s in specs(detector.Params):
            default = "off" if s.kind is bool and not s.default else f"{s.default!r}".strip("'")
            text = s.help.replace("|", "\\|")  # Markdown: a pipe would end the cell
            lines.append(f"| `{s.flag}` | {name} | {default} | {s.bounds() or '-'} | {text} |")
    return "\n".join(lines) + "\n"

