import os
import stat
from pathlib import Path

import pytest

from auditor.fileio import json_bytes, sha256_tree, write_bytes_atomic


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
    with pytest.raises(OSError):
        write_bytes_atomic(p, b"new")
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def test_json_bytes_is_canonical():
    assert json_bytes({"b": 1, "a": "é"}) == '{\n  "a": "é",\n  "b": 1\n}\n'.encode()


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
    for p in ["root/imgs/a.png", "root/imgs/link.png", "root/linkdir/secret.png", "root/linkdir/../imgs/a.png",
              "root/./imgs//a.png", "root/imgs/missing.png", str(tmp_path / "root" / "imgs" / "a.png"), "root/imgs/.."]:
        assert real_path(Path(p)) == Path(p).resolve(), p
