"""Checks of paths and output folders that need no heavy import: a mistyped
path is reported in well under a second, before torch or scikit-learn load."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

from .errors import AuditInputError

# What an audit leaves in its output folder besides the bundle, and that a
# rerun may find there without --overwrite: the stage-1 shards it resumes
# from, and the log of an internal error.
PARTS = ".features.parts"
ERROR_LOG = "bye-audit-error.log"
# Any of these marks a folder holding a previous bundle.
BUNDLE_MARKERS = ("manifest.json", "analysis.json", "summary.json")


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH (the reproducible-builds convention: the audit's
    date), checked before any work: a whole number of seconds since 1970."""
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return None
    if not epoch.strip().isdigit() or int(epoch) > 253402300799:  # 9999-12-31T23:59:59Z
        raise AuditInputError(f"SOURCE_DATE_EPOCH={epoch!r}: not a Unix time (whole seconds since 1970, "
                              "e.g. 1765000000); unset it or give one")
    return int(epoch)


def check_folder(path: Path | None, option: str, what: str) -> None:
    if path is not None and not Path(path).is_dir():
        state = "is not a folder" if Path(path).exists() else "not found"
        raise AuditInputError(f"{path}: {what} {state}; pass an existing folder to {option}")


def check_file(path: Path | None, option: str, what: str) -> None:
    if path is not None and not Path(path).is_file():
        state = "is not a file" if Path(path).exists() else "not found"
        raise AuditInputError(f"{path}: {what} {state}; pass an existing file to {option}")


def refuse_inputs(targets: list[Path], folders: dict[str, Path | None], files: set[str]) -> None:
    """Refuse to write any of `targets` when it lies in one of the input `folders`
    (label -> folder) or is one of the input `files` (resolved paths)."""
    for target in targets:
        t = Path(target).resolve()
        for label, folder in folders.items():
            if folder is not None and (t == Path(folder).resolve()
                                       or t.is_relative_to(Path(folder).resolve())):
                raise AuditInputError(f"{target}: inside the {label} folder {Path(folder).resolve()}; "
                                      "writing there could overwrite an input; choose another --out")
        if str(t) in files:
            raise AuditInputError(f"{target}: writing it would overwrite an input; choose another --out")


def check_out_folder(out: Path, overwrite: bool, inputs: set[str] = frozenset(),
                     reads: set[str] = frozenset(), bundle: Sequence[str] = ()) -> None:
    """Refuse to mix a new bundle with other files: a folder holding a previous
    bundle needs `overwrite`, and with `bundle` (the names of a bundle's files,
    glob patterns) one that also holds other files is refused even then; any
    other non-empty folder is refused (an interrupted audit's shards and error
    log excepted: a rerun resumes). `inputs`: resolved input files, named as
    such when found in `out`; `reads`: resolved files in `out` the command
    reads and keeps as they are (`analyze OUT/features.parquet --out OUT`)."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise AuditInputError(f"{out}: exists and is not a folder; choose another --out")
    names = sorted(p.name for p in out.iterdir())
    if any(n in BUNDLE_MARKERS for n in names):
        if not overwrite:
            raise AuditInputError(f"{out}: holds the bundle of an earlier audit; pass --overwrite to replace "
                                  "it, or choose another --out")
        others = [n for n in names if bundle and n not in (PARTS, ERROR_LOG)
                  and not any(fnmatch(n, pattern) for pattern in bundle)]
        if others:
            raise AuditInputError(f"{out}: holds an earlier bundle and {len(others)} other file(s), e.g. "
                                  f"{others[0]!r}; --overwrite replaces only a bundle: move them out, or "
                                  "choose another --out")
        return
    foreign = [n for n in names if n not in (PARTS, ERROR_LOG) and str((out / n).resolve()) not in reads]
    held = [n for n in foreign if str((out / n).resolve()) in inputs]
    if held:
        raise AuditInputError(f"{out / held[0]}: an input is in the output folder; writing there would "
                              "overwrite an input; choose another --out")
    if foreign:
        raise AuditInputError(f"{out}: not empty ({len(foreign)} other file(s), e.g. {foreign[0]!r}) and not "
                              "a bye-audit output folder; choose a new or empty --out")
