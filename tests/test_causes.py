"""Every skip and failure carries its cause code from where it happens; the
codes are enumerated from the code itself, never from copied reason strings."""

import ast
import json
from pathlib import Path

from PIL import Image

from auditor.causes import ABOUT, Cause, cause_of, group_reasons
from auditor.data import read_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_reasons_group_by_cause_largest_first_with_the_first_examples():
    items = [(f"a{i}", "image-missing", f"image file not found: img/{i}.png") for i in range(1000)]
    items += [("b0", "image-absolute", "image path '/abs/x.png' is absolute"),
              ("c0", "prompt-too-long", "prompt is 9,000 tokens, over the limit of 2,048"),
              ("c1", "prompt-too-long", "prompt is 9,100 tokens, over the limit of 2,048"),
              ("d0", None, "a reason from a features file of schema 4")]
    groups = group_reasons(items)
    assert [(g.code, g.count) for g in groups] == [("image-missing", 1000), ("prompt-too-long", 2),
                                                   ("image-absolute", 1), ("other", 1)]
    assert groups[0].examples == (("a0", "image file not found: img/0.png"),
                                  ("a1", "image file not found: img/1.png"),
                                  ("a2", "image file not found: img/2.png"))
    assert "--image-root" in groups[0].fix and "--image-root" in groups[0].line()
    assert "1,000 record(s)" in groups[0].line()


def test_every_cause_has_a_title_and_a_one_line_fix():
    assert set(ABOUT) == set(Cause)
    for cause, (title, fix) in ABOUT.items():
        assert title and fix and "\n" not in title + fix, cause
    assert cause_of("no-such-code")[0] is cause_of(None)[0] is Cause.OTHER


def _calls(name: str):
    for path in sorted((ROOT / "auditor").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name:
                yield path.relative_to(ROOT), node


def test_every_skip_and_failure_in_the_code_names_its_cause_and_every_cause_is_used():
    """A skipped or failed row built anywhere in auditor/ passes `cause=`; a
    skipped Sample (one with a reason) passes `skip_cause=`; and every Cause
    but OTHER (files of schema < 5) is given somewhere."""
    missing = []
    for path, call in _calls("SampleFeatures"):
        status = call.args[2].value if len(call.args) > 2 and isinstance(call.args[2], ast.Constant) else None
        if status in ("skipped", "error") and not any(k.arg == "cause" for k in call.keywords):
            missing.append(f"{path}:{call.lineno}")
    for path, call in _calls("Sample"):
        if len(call.args) > 5 and not any(k.arg == "skip_cause" for k in call.keywords):
            missing.append(f"{path}:{call.lineno}")
    assert missing == []
    used = {node.attr for path in (ROOT / "auditor").rglob("*.py") if path.name != "causes.py"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "Cause"}
    assert used == {c.name for c in Cause} - {"OTHER"}


def test_the_reader_codes_each_skip_where_it_decides_it(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    conv = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]
    cases = [
        ([1], Cause.NOT_AN_OBJECT),
        ({"id": "c", "image": "a.png"}, Cause.NO_CONVERSATION),
        ({"id": "d", "conversations": conv}, Cause.NO_IMAGE),
        ({"id": "e", "images": ["a.png", "a.png"], "conversations": conv}, Cause.SEVERAL_IMAGES),
        ({"id": "f", "image": {"bytes": "..."}, "conversations": conv}, Cause.IMAGE_NOT_PATH),
        ({"id": "g", "image": "a\x00.png", "conversations": conv}, Cause.IMAGE_PATH_INVALID),
        ({"id": "h", "image": str(tmp_path / "a.png"), "conversations": conv}, Cause.IMAGE_ABSOLUTE),
        ({"id": "i", "image": "../a.png", "conversations": conv}, Cause.IMAGE_ESCAPES_ROOT),
        ({"id": "j", "image": "b.png", "conversations": conv}, Cause.IMAGE_MISSING),
        ({"id": "k", "image": "a.png", "conversations": conv}, None),
    ]
    path = tmp_path / "d.json"
    path.write_text(json.dumps([rec for rec, _ in cases]))
    got = [s.skip_cause for s in read_dataset(path).samples]
    assert got == [c for _, c in cases]


def test_the_summary_schema_lists_every_cause():
    schema = json.loads((ROOT / "docs" / "summary.schema.json").read_text())
    item = schema["properties"]["unanalysed_by_cause"]["items"]["properties"]["cause"]
    assert item["enum"] == [c.value for c in Cause]
