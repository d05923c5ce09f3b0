import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import numpy as np

from auditor.errors import OutputWriteError
from auditor.fileio import (Rows, check_writable, json_bytes, sha256_tree, write_bytes_atomic,
                            write_files_atomic)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    write_bytes_atomic(p, b"one")
    write_bytes_atomic(p, b"two")
    assert p.read_bytes() == b"two"
    assert [q.name for q in p.parent.iterdir()] == ["f.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    write_bytes_atomic(p, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OutputWriteError, match=r"f\.txt: cannot be written \(disk full\)"):
        write_bytes_atomic(p, b"new")
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def test_json_bytes_is_canonical():
    assert json_bytes({"b": 1, "a": "é"}) == '{\n  "a": "é",\n  "b": 1\n}\n'.encode()


def test_rows_are_written_exactly_as_the_list_of_dicts_they_stand_for():
    ids = ["s0", 'q"uote', "back\\slash", "new\nline", "ünï €", "</script>", "\x01", ""]
    n = len(ids)
    cols = {"id": ids, "index": np.arange(n) * 10**12,
            "score": np.array([0.1, -2.5e-300, 1e300, 3.0, -0.0, 1 / 3,
                                                                          7e-8, 2.0**60]),
            "mixed": [None, True, 1, 2.5, "x", float("nan"), float("inf"), False],
            "odd": [float("nan")] + [1.0] * (n - 1)}
    rows = Rows(cols)
    as_list = [{k: (v.tolist() if hasattr(v, "tolist") else v)[i] for k, v in cols.items()} for i in range(n)]
    assert rows == as_list and list(rows) == as_list and rows[2] == as_list[2] and rows[1:3] == as_list[1:3]
    assert json_bytes({"rows": rows, "n": n}) == json_bytes({"rows": as_list, "n": n})
    assert json_bytes({"rows": Rows({"a": []})}) == json_bytes({"rows": []})
    with pytest.raises(ValueError, match="different lengths"):
        Rows({"a": [1, 2], "b": [1]})
    with pytest.raises(ValueError, match="flat values only"):
        json_bytes(Rows({"a": [[1], [2]]}))


def test_tree_digest_sees_names_and_contents(tmp_path):
    (tmp_path / "a").write_text("1")
    d1 = sha256_tree(tmp_path)
    (tmp_path / "a").write_text("2")
    d2 = sha256_tree(tmp_path)
    (tmp_path / "a").rename(tmp_path / "b")
    assert len({d1, d2, sha256_tree(tmp_path)}) == 3


def test_real_path_agrees_with_resolve_through_links_and_dotdot(tmp_path, monkeypatch):
    from auditor.fileio import real_path

    (tmp_path / "root" / "imgs").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(b"x")
    (tmp_path / "root" / "imgs" / "a.png").write_bytes(b"a")
    os.symlink(tmp_path / "outside", tmp_path / "root" / "linkdir")
    os.symlink(tmp_path / "outside" / "secret.png", tmp_path / "root" / "imgs" / "link.png")
    monkeypatch.chdir(tmp_path)
    for p in ["root/imgs/a.png", "root/imgs/link.png", "root/linkdir/secret.png",
              "root/linkdir/../imgs/a.png",
              "root/./imgs//a.png", "root/imgs/missing.png", str(tmp_path / "root" / "imgs" / "a.png"),
              "root/imgs/.."]:
        assert real_path(Path(p)) == Path(p).resolve(), p


@given(st.lists(st.tuples(st.text(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
                max_size=20))
def test_rows_match_the_list_path_on_any_strings_ints_and_floats(rows):
    cols = {"id": [r[0] for r in rows], "index": [r[1] for r in rows], "score": [r[2] for r in rows]}
    as_list = [{"id": a, "index": b, "score": c} for a, b, c in rows]
    assert json_bytes([1, {"s": Rows(cols)}]) == json_bytes([1, {"s": as_list}])


def test_a_bundle_is_written_all_or_nothing_when_the_disk_fills(tmp_path, monkeypatch):
    """A full disk on the third file leaves the previous bundle as it was: no
    mix of new and old files, no temporary files."""
    import errno

    write_files_atomic(tmp_path, {"a": b"old a", "b": b"old b", "c": b"old c"})
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    src = tmp_path.parent / "features.src"
    src.write_bytes(b"new features")
    with pytest.raises(OutputWriteError, match=r"/c: cannot be written \(No space left on device\)"):
        write_files_atomic(tmp_path, {"a": b"new a", "f": src, "c": b"new c"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"a": b"old a", "b": b"old b",
                                                                    "c": b"old c"}
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert write_files_atomic(tmp_path, {"f": src}) == [tmp_path / "f"]
    assert (tmp_path / "f").read_bytes() == src.read_bytes()


def test_an_unwritable_output_folder_is_found_before_any_work(tmp_path, monkeypatch):
    import tempfile

    def refuse(*a, **k):  # what a read-only folder does (the tests run as root, who may write anywhere)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputWriteError,
                       match=r"out: cannot write there \(Permission denied\); choose another"):
        check_writable(tmp_path / "out")
    (tmp_path / "file").write_text("x")
    monkeypatch.undo()
    with pytest.raises(OutputWriteError, match="cannot write there"):
        check_writable(tmp_path / "file" / "out")  # a file in the way


def test_json_outputs_write_a_lone_surrogate_back_as_its_escape():
    import json

    data = json_bytes({"prompt": "a\ud800b", "rows": ["\udfff"]})
    assert b"\\ud800" in data and json.loads(data) == {"prompt": "a\ud800b", "rows": ["\udfff"]}
