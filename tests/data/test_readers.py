import json
from pathlib import Path

import orjson
import pytest
from PIL import Image
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

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
             '{"id": 123456789012345678901234567890, "image": "img.png", "score": NaN, "note": "\\ud800", '
             '"conversations": [{"from": "human", "value": "<image>\\nq"}, {"from": "gpt", "value": "a"}]}']
    p = folder / "d.jsonl"
    p.write_text("\n".join(lines) + "\n")
    ds = read_dataset(p)
    assert [s.id for s in ds.samples] == ["r0", "123456789012345678901234567890"]
    assert ds.samples[1].prompt == "q" and ds.samples[1].ok and ds.records[1]["note"] == "\ud800"
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


# Hostile inputs (each reproduced a crash or a wrong read before it was fixed)

def test_jsonl_lines_end_at_newline_only_and_keep_their_carriage_return(folder):
    """U+2028 and U+0085 are legal raw inside JSON strings (str.splitlines split on
    them); a CRLF file's "\\r" stays with its line so kept lines are copied byte for byte."""
    from auditor.data import render_cleaned

    p = folder / "d.jsonl"
    lines = [json.dumps(_rec(0, human="<image>\nWhat\u2028digit\x85is shown?"), ensure_ascii=False),
             json.dumps(_rec(1), ensure_ascii=False)]
    p.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    ds = read_dataset(p)
    assert [s.prompt for s in ds.samples] == ["What\u2028digit\x85is shown?", "What digit is shown?"]
    assert render_cleaned(ds, [0, 1]) == p.read_bytes()


@pytest.mark.parametrize("where", ["field", "file", "jsonl"])
def test_json_nested_thousands_deep_is_a_one_line_error(folder, where):
    deep = "[" * 5000 + "]" * 5000
    if where == "jsonl":
        p = folder / "d.jsonl"
        p.write_text(json.dumps(_rec(0)) + "\n" + '{"id": "x", "extra": ' + deep + "}\n")
        match = r"d\.jsonl:2: JSON nested too deeply"
    else:
        p = folder / "d.json"
        p.write_text(deep if where == "file" else '[{"id": "x", "extra": ' + deep + "}]")
        match = r"d\.json: JSON nested too deeply"
    with pytest.raises(AuditInputError, match=match):
        read_dataset(p)


def test_an_id_with_a_lone_surrogate_is_refused_before_anything_runs(folder):
    p = folder / "d.jsonl"
    p.write_text(json.dumps(_rec(0)) + "\n" + json.dumps({**_rec(1), "id": "\ud800"}) + "\n")
    with pytest.raises(AuditInputError, match=r"record 1: id '\\ud800' is not valid Unicode"):
        read_dataset(p)


@pytest.mark.parametrize("turn", [0, 1])
def test_an_instruction_or_answer_no_tokenizer_can_encode_is_an_input_error_naming_the_record(folder, turn):
    """A lone surrogate in an answer is the input's fault (exit 2, record named), not
    the model's: counted as a model failure, 47 poisoned records made unanalysable
    would keep coverage >= 95% and pass into cleaned.*."""
    rec = _rec(1)
    rec["conversations"][turn]["value"] += "\ud800"
    p = folder / "d.json"
    p.write_text(json.dumps([_rec(0), rec]))
    part = "instruction" if turn == 0 else "answer"
    with pytest.raises(AuditInputError,
                       match=rf"d\.json: record 1 \(id .r1.\): its {part} is not valid Unicode"):
        read_dataset(p)


def test_an_image_path_with_a_lone_surrogate_is_a_skipped_record(folder):
    p = folder / "d.json"
    p.write_text(json.dumps([_rec(0, image="a\ud800.png"), _rec(1)]))
    ds = read_dataset(p)
    assert ds.samples[0].skip_reason == "image path 'a\\ud800.png' is not valid Unicode" and ds.samples[1].ok


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=()), max_size=20),  # lone surrogates and controls too
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "image", "conversations", "from", "value", "x"]), inner, max_size=4),
    max_leaves=12), max_size=6))
@example(records=[{"id": None, "conversations": [{"id": None, "from": []}]}])  # an unhashable role
def test_any_record_shape_is_read_or_refused_in_one_line(folder, records):
    """Whatever a record holds: read (unreadable records skipped with a reason) or
    an AuditInputError (e.g. repeated ids); never another exception; the copies
    written back are the input records."""
    from auditor.data import render_cleaned, render_flagged

    p = folder / "fuzz.json"
    p.write_text(json.dumps(records))
    try:
        ds = read_dataset(p)
    except AuditInputError as e:
        assert "\n" not in str(e)
        return
    assert len(ds.samples) == len(records)
    assert all(s.ok or s.skip_reason for s in ds.samples)
    assert json.loads(render_cleaned(ds, range(len(records)))) == records
    flagged = [json.loads(line)["record"]
               for line in render_flagged(ds, [{"index": i, "score": 0.0} for i in range(len(records))])
               .decode().split("\n")[:-1]]  # JSON Lines end at "\n" only
    assert flagged == records


def test_a_corrupt_parquet_dataset_is_a_one_line_error(folder):
    p = folder / "d.parquet"
    p.write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    with pytest.raises(AuditInputError, match=r"d\.parquet: not a readable Parquet file") as err:
        read_dataset(p)
    assert "\n" not in str(err.value)


def test_openai_messages_and_sharegpt_records_read_like_llava_ones(tmp_path):
    """Hugging Face / OpenAI `messages` records and ShareGPT ones read like LLaVA's."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    recs = [
        {"id": "llava", "image": "a.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "a cat"}]},
        {"id": "messages", "images": ["a.png"], "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]}]},
        {"id": "sharegpt", "image": "a.png", "conversations": [
            {"role": "user", "content": "<image> What is shown?"},
            {"role": "assistant", "content": "a cat"}]},
        {"id": "two", "images": ["a.png", "a.png"], "messages": [
            {"role": "user", "content": "What differs?"}, {"role": "assistant", "content": "nothing"}]},
        {"id": "none", "text": "hello"},
    ]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(recs))
    ds = read_dataset(path)
    for s in ds.samples[:3]:
        got = (s.ok, s.prompt, s.answer, Path(s.image).name)
        assert got == (True, "What is shown?", "a cat", "a.png"), s.id
    assert ds.samples[3].skip_reason == "record has 2 images; one image per record is supported"
    assert ds.samples[4].skip_reason == "record has no conversations"
    from auditor.causes import cause_of

    fix = cause_of(ds.samples[4].skip_cause)[2]
    assert '"conversations": [{"from": "human"' in fix and '"messages": [{"role": "user"' in fix
    assert "\n" not in fix


def test_a_multi_turn_record_keeps_its_later_turns_in_order(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    conv = [{"from": "human", "value": "<image>\nWhat digit?"}, {"from": "gpt", "value": "seven"},
            {"from": "human", "value": "And its colour?"}, {"from": "gpt", "value": "red"},
            {"from": "system", "value": "ignored"}, {"from": "gpt", "value": "also red"},
            {"from": "human", "value": "Anything else?"}]  # a trailing question has no answer to score
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which?"}]},
            {"role": "assistant", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "<image> Sure?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}]
    (tmp_path / "d.json").write_text(json.dumps([{"id": "a", "image": "a.png", "conversations": conv},
                                                 {"id": "b", "images": ["a.png"], "messages": chat},
                                                 {"id": "c", "image": "a.png", "conversations": conv[:2]}]))
    a, b, c = read_dataset(tmp_path / "d.json").samples
    assert (a.prompt, a.answer) == ("What digit?", "seven")
    assert a.later == (("And its colour?", "red"), ("", "also red"))
    assert b.later == (("Sure?", "yes"),) and c.later == ()


def test_a_lone_surrogate_in_a_later_turn_names_the_turn(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    conv = ('[{"from": "human", "value": "<image> Q"}, {"from": "gpt", "value": "A"}, '
            '{"from": "human", "value": "Q2"}, {"from": "gpt", "value": "bad \\ud800"}]')
    (tmp_path / "d.jsonl").write_text('{"id": "x", "image": "a.png", "conversations": ' + conv + '}\n')
    with pytest.raises(AuditInputError, match=r"record 0 \(id 'x'\): its turn 2's answer is not valid"):
        read_dataset(tmp_path / "d.jsonl")
