"""The one place that writes files: atomically, never over an input."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from .errors import OutputWriteError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would have given; mkstemp uses 0600


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` via a temporary file in the same folder and a rename,
    so a reader never sees a half-written file; `mode` overrides the umask's
    (0o600 for a private key)."""
    _write_atomic(path, lambda fh: fh.write(data), mode)


def _write_atomic(path: Path, fill: Callable[[BinaryIO], Any], mode: int | None = None) -> None:
    tmp = _stage(path, fill, mode)
    try:
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, e) from None


def _stage(path: Path, fill: Callable[[BinaryIO], Any], mode: int | None = None) -> str:
    """`fill` written, synced and given its mode in a temporary file beside `path`;
    its name. On failure nothing is left, and OutputWriteError names `path`."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE if mode is None else mode)
        return tmp
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise


def _write_error(path: Path, e: OSError) -> OutputWriteError:
    return OutputWriteError(f"{path}: cannot be written ({e.strerror or e}); nothing of it was kept: "
                            "free space or choose another output location")


def write_files_atomic(folder: Path, items: Mapping[str, bytes | Path]) -> list[Path]:
    """Write each item (bytes, or a file to copy) as `folder / name`, all or
    nothing: every file is first complete in a temporary file, and only then are
    they renamed into place, so a full disk or a read-only folder leaves the
    folder as it was (a previous bundle untouched). The paths, in `items` order."""
    staged: list[tuple[str, Path]] = []
    try:
        for name, data in items.items():
            target = Path(folder) / name
            if isinstance(data, bytes):
                staged.append((_stage(target, lambda fh, d=data: fh.write(d)), target))
            else:
                staged.append((_stage(target, lambda fh, src=data: _copy_into(src, fh)), target))
        for i, (tmp, target) in enumerate(staged):
            try:
                os.replace(tmp, target)
            except OSError as e:
                raise _write_error(target, e) from None
            staged[i] = ("", target)
    finally:
        for tmp, _ in staged:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
    return [target for _, target in staged]


def _copy_into(src: Path, fh: BinaryIO) -> None:
    with open(src, "rb") as inp:
        shutil.copyfileobj(inp, fh, 1 << 20)


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be made in it, before hours of
    work whose results could not be kept; OutputWriteError otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".bye-audit-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputWriteError(f"{folder}: cannot write there ({e.strerror or e}); "
                               "choose another output location") from None


_INLINE = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(", ", ": "))  # the C encoder
# The same encoder built once: JSONEncoder.encode builds it again on every call,
# which is most of the cost of a million one-line items. Falls back when the
# interpreter has no C accelerator.
_C_INLINE = (None if json.encoder.c_make_encoder is None else json.encoder.c_make_encoder(
    None, _INLINE.default, json.encoder.encode_basestring, None, ": ", ", ", True, False, True))


def _inline(value: Any) -> str:
    if _C_INLINE is None or isinstance(value, str):  # a bare string goes through the encoder's own path
        return _INLINE.encode(value)
    return "".join(_C_INLINE(value, 0))


def json_compact_bytes(obj: Any) -> bytes:
    """Canonical compact JSON (sorted keys, no indent, UTF-8, trailing newline): for
    machine-read files whose nesting makes indenting slow (SARIF)."""
    return utf8(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n")


def utf8(json_text: str) -> bytes:
    """JSON text as UTF-8. A lone surrogate (a record's "\\ud800"; UTF-8 cannot
    encode it) is written back as that same escape, which only a JSON string
    can hold, so the output parses to the input's value."""
    return json_text.encode("utf-8", "backslashreplace")


class Rows(Sequence[dict[str, Any]]):
    """A list of flat JSON objects held as columns (key -> one value per row: a
    list, tuple or 1-D numpy array). It reads like that list of dicts, and
    json_bytes writes it byte for byte as it would write the list, without
    building a million dicts and encoding each on its own."""

    def __init__(self, columns: Mapping[str, Sequence[Any]]):
        self.columns = {k: (v.tolist() if hasattr(v, "tolist") else list(v)) for k, v in columns.items()}
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"Rows: columns of different lengths {sorted(lengths)}")
        self._n = lengths.pop() if lengths else 0

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        return {k: v[i] for k, v in self.columns.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        keys = list(self.columns)
        return (dict(zip(keys, values)) for values in zip(*self.columns.values()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (Rows, list, tuple)) and list(self) == list(other)

    def encoded_lines(self, pad: str) -> list[str]:
        """Each row as `_inline` writes a dict (sorted keys), after `pad`."""
        keys = sorted(self.columns)
        if not keys:
            return [pad + "{}"] * self._n
        cols = [_encoded_column(self.columns[k]) for k in keys]
        template = pad + "{" + ", ".join(f"{_key(k)}: %s" for k in keys) + "}"
        return [template % values for values in zip(*cols)]


def _encoded_column(values: list[Any]) -> list[str]:
    """`_inline(v)` for each v; str, int and finite float columns take a fast
    path that gives the same text (json writes a float as its repr)."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return list(map(json.encoder.encode_basestring, values))
    if kinds == {int}:
        return list(map(int.__repr__, values))
    if kinds == {float} and all(map(math.isfinite, values)):
        return list(map(float.__repr__, values))
    if any(isinstance(v, (dict, list, tuple)) for v in values):
        raise ValueError("Rows holds flat values only (no lists or objects)")
    return list(map(_inline, values))


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON (sorted keys, 2-space indent, UTF-8, trailing newline).

    A list whose items hold no list or object is written one item per line,
    each item on its own line in compact form: a million-sample score list
    then goes through the C encoder (an indented dump runs the pure-Python
    one) and still diffs line by line."""
    return utf8(_encode(obj, 0) + "\n")


def _flat(value: Any) -> bool:
    if isinstance(value, dict):
        return not any(isinstance(v, (dict, list, tuple, Rows)) for v in value.values())
    return not isinstance(value, (list, tuple, Rows))


def _key(k: Any) -> str:
    return _INLINE.encode(k if isinstance(k, str) else _INLINE.encode(k))  # JSON's own key rule: 3 -> "3"


def _encode(obj: Any, level: int) -> str:
    pad, end = "  " * (level + 1), "\n" + "  " * level
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = (f"{pad}{_key(k)}: {_encode(v, level + 1)}" for k, v in sorted(obj.items()))
        return "{\n" + ",\n".join(items) + end + "}"
    if isinstance(obj, Rows):
        return "[\n" + ",\n".join(obj.encoded_lines(pad)) + end + "]" if len(obj) else "[]"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        if all(map(_flat, obj)):
            items = (pad + _inline(v) for v in obj)
        else:
            items = (pad + _encode(v, level + 1) for v in obj)
        return "[\n" + ",\n".join(items) + end + "]"
    return _inline(obj)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: Path) -> str:
    """Digest of a folder: SHA-256 over sorted (relative path, file digest) lines."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(root).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


@lru_cache(maxsize=65536)
def _real_dir(folder: str) -> str:
    return os.path.realpath(folder)


def real_path(path: Path) -> Path:
    """`Path.resolve()` (symlinks followed, `..` collapsed), with each folder
    resolved once: datasets reference millions of images in a few folders, and
    resolving every path component of every image is most of the cost of
    reading them. The last component is still checked for being a link."""
    return Path(real_path_str(os.fspath(path)))


def real_path_str(path: str) -> str:
    """real_path on a string, without building Path objects (the per-record loop)."""
    return resolve_file(path)[0]


def resolve_file(path: str) -> tuple[str, bool]:
    """(real_path_str(path), whether it is a regular file) with one lstat for
    the usual case (a file that is not a link): this runs once per image."""
    parts = path.split(os.sep)
    if ".." in parts:  # must resolve links before collapsing: no shortcut
        real = os.path.realpath(path)
        return real, os.path.isfile(real)
    if path.startswith(os.sep) and "." not in parts and "" not in parts[1:]:
        head, tail = path.rsplit(os.sep, 1)  # already absolute and normal: abspath would change nothing
        head = head or os.sep
    else:
        head, tail = os.path.split(os.path.abspath(path))  # abspath only drops "." and "//" here
    if not tail:
        real = os.path.realpath(path)
        return real, os.path.isfile(real)
    folder = _real_dir(head)
    real = folder + tail if folder.endswith(os.sep) else folder + os.sep + tail
    try:
        mode = os.lstat(real).st_mode
    except OSError:
        return real, False
    if stat.S_ISLNK(mode):
        real = os.path.realpath(real)
        return real, os.path.isfile(real)
    return real, stat.S_ISREG(mode)
