import json

import orjson
import pytest

from auditor.data import read_dataset
from auditor.errors import AuditInputError


def _rec(i, image="img.png", human="<image>\nWhat digit is shown?", gpt="seven"):
    r = {"id": f"r{i}", "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]}
    if image is not None:
        r["image"] = image
    return r


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "img.png").write_bytes(b"x")
    return tmp_path


def test_reads_llava_json_and_strips_placeholder(folder):
    p = folder / "d.json"
    p.write_text(json.dumps([_rec(0), _rec(1)]))
    ds = read_dataset(p)
    assert [s.id for s in ds.samples] == ["r0", "r1"]
    assert ds.samples[0].prompt == "What digit is shown?"
    assert ds.samples[0].answer == "seven"
    assert ds.samples[0].image_path == (folder / "img.png").resolve()
    assert ds.n_skipped == 0


def test_invalid_json_names_file_line_and_column(folder):
    p = folder / "d.json"
    p.write_text('[\n  {"id": "a",\n  "image" "x.png"}\n]')
    with pytest.raises(AuditInputError, match=r"d\.json:3:11: invalid JSON"):
        read_dataset(p)


def test_invalid_jsonl_names_the_line(folder):
    p = folder / "d.jsonl"
    p.write_text(json.dumps(_rec(0)) + "\n{oops\n")
    with pytest.raises(AuditInputError, match=r"d\.jsonl:2:2: invalid JSON"):
        read_dataset(p)


def test_jsonl_reads_what_the_json_module_reads_where_orjson_is_stricter(folder):
    lines = [json.dumps(_rec(0)),
             '{"id": 123456789012345678901234567890, "image": "img.png", "score": NaN, "conversations": '
             '[{"from": "human", "value": "<image>\\nq\\ud800"}, {"from": "gpt", "value": "a"}]}']
    p = folder / "d.jsonl"
    p.write_text("\n".join(lines) + "\n")
    ds = read_dataset(p)
    assert [s.id for s in ds.samples] == ["r0", "123456789012345678901234567890"]
    assert ds.samples[1].prompt == "q\ud800" and ds.samples[1].ok
    with pytest.raises(orjson.JSONDecodeError):  # so the line above went through the fallback
        orjson.loads(lines[1])


def test_bad_records_are_skipped_with_reasons(folder):
    (folder.parent / "outside.png").write_bytes(b"x")
    (folder / "sub").mkdir()
    (folder / "sub" / "link.png").symlink_to(folder.parent / "outside.png")
    (folder / "dir.png").mkdir()
    recs = [_rec(0), _rec(1, image=None), _rec(2, image="missing.png"), _rec(3, image="../outside.png"),
            _rec(4, image="/etc/passwd"), "not an object", {"id": "r6", "image": "img.png"},
            _rec(7, image="img\x00.png"), _rec(8, image="sub/link.png"), _rec(9, image="dir.png"),
            _rec(10, image="./sub/../img.png"), _rec(11, image="sub//../img.png")]
    p = folder / "d.json"
    p.write_text(json.dumps(recs))
    ds = read_dataset(p)
    reasons = [s.skip_reason for s in ds.samples]
    assert reasons[0] is None
    assert reasons[1] == "record has no image"
    assert reasons[2] == "image file not found: missing.png"
    assert "escapes the dataset root" in reasons[3]
    assert "absolute" in reasons[4]
    assert reasons[5] == "record is not a JSON object"
    assert reasons[6] == "record has no conversations"
    assert reasons[7] == "image path 'img\\x00.png' contains a NUL byte"
    assert "escapes the dataset root" in reasons[8]  # a link pointing outside
    assert reasons[9] == "image file not found: dir.png"  # a folder is not an image
    assert reasons[10] is None and reasons[11] is None
    assert ds.samples[10].image == ds.samples[11].image == str((folder / "img.png").resolve())
    assert ds.n_skipped == 9
    assert len(ds.records) == 12  # nothing dropped


def test_image_root_option(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    p = other / "d.json"
    p.write_text(json.dumps([_rec(0)]))
    assert read_dataset(p).samples[0].skip_reason == "image file not found: img.png"
    assert read_dataset(p, image_root=folder).samples[0].ok


def test_whole_file_problems_raise(folder):
    with pytest.raises(AuditInputError, match="not found"):
        read_dataset(folder / "nope.json")
    (folder / "d.csv").write_text("a,b")
    with pytest.raises(AuditInputError, match="unsupported dataset format '.csv'"):
        read_dataset(folder / "d.csv")
    (folder / "obj.json").write_text("{}")
    with pytest.raises(AuditInputError, match="expected a JSON array"):
        read_dataset(folder / "obj.json")
    (folder / "dup.json").write_text(json.dumps([_rec(0), _rec(0)]))
    with pytest.raises(AuditInputError, match="repeats record 0"):
        read_dataset(folder / "dup.json")
