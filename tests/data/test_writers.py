import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from auditor.data import read_dataset, render_cleaned, render_flagged


def _write(p, recs):
    if p.suffix == ".json":
        p.write_text(json.dumps(recs))
    elif p.suffix == ".jsonl":
        p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    else:
        pq.write_table(pa.Table.from_pylist(recs), p)


def _read(p):
    if p.suffix == ".json":
        return json.loads(p.read_text())
    if p.suffix == ".jsonl":
        return [json.loads(ln) for ln in p.read_text().splitlines()]
    return pq.read_table(p).to_pylist()


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_flagged_and_cleaned_together_are_exactly_the_input(tmp_path, suffix):
    recs = [{"id": f"r{i}", "image": "x.png", "extra": {"k": [i, i + 1], "s": "é"},
             "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}
            for i in range(7)]
    p = tmp_path / f"d{suffix}"
    _write(p, recs)
    ds = read_dataset(p)
    flagged = {1: 0.25, 4: 0.5}
    out = tmp_path / f"cleaned{suffix}"
    out.write_bytes(render_cleaned(ds, [i for i in range(7) if i not in flagged]))
    cleaned = _read(out)
    rows = [json.loads(ln) for ln in render_flagged(ds, [{"index": i, "id": ds.samples[i].id, "score": v}
                                                        for i, v in flagged.items()]
                                                    ).decode().splitlines()]
    assert [r["score"] for r in rows] == [0.25, 0.5]
    assert [r["id"] for r in rows] == ["r1", "r4"]
    merged = {r["index"]: r["record"] for r in rows}
    kept = iter(cleaned)
    rebuilt = [merged[i] if i in merged else next(kept) for i in range(7)]
    assert rebuilt == recs


def test_jsonl_copy_keeps_each_kept_line_byte_for_byte(tmp_path):
    lines = ['{"id": "a",  "image": "x.png", "conversations": [{"from": "human", "value": "q"}], "n": 1.50}',
             '{"id":"b","image":"x.png","conversations":[{"from":"human","value":"q \\u00e9"}]}',
             '{"id": "c", "image": "x.png", "conversations": [{"from": "human", "value": "q"}]}']
    p = tmp_path / "d.jsonl"
    p.write_text(lines[0] + "\n\n" + lines[1] + "\r\n" + lines[2])  # a blank line, CRLF, no final newline
    ds = read_dataset(p)
    assert render_cleaned(ds, [2, 0]) == (lines[0] + "\n" + lines[2] + "\n").encode()
    assert render_cleaned(ds, [1]) == (lines[1] + "\r\n").encode()  # its line ending kept with it


def test_parquet_copy_keeps_the_schema(tmp_path):
    recs = [{"id": f"r{i}", "image": "x.png", "n": i,
             "conversations": [{"from": "human", "value": "<image>\nq"}]} for i in range(3)]
    table = pa.Table.from_pylist(recs).replace_schema_metadata({"origin": "customer"})
    pq.write_table(table, tmp_path / "d.parquet")
    ds = read_dataset(tmp_path / "d.parquet")
    (tmp_path / "c.parquet").write_bytes(render_cleaned(ds, [0, 2]))
    back = pq.read_table(tmp_path / "c.parquet")
    assert back.schema == table.schema and back.schema.metadata == table.schema.metadata
    assert back.column("id").to_pylist() == ["r0", "r2"]


def test_flagged_rows_keep_embedded_bytes(tmp_path):
    recs = [{"id": "a", "image": {"bytes": b"\x89PNG", "path": None},
             "conversations": [{"from": "human", "value": "<image>\nq"}]}]
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "d.parquet")
    ds = read_dataset(tmp_path / "d.parquet")
    assert "embedded images are not supported" in ds.samples[0].skip_reason
    row = json.loads(render_flagged(ds, [{"index": 0, "id": ds.samples[0].id, "score": 0.1}]))
    assert row["record"]["image"]["bytes"] == {"$base64": "iVBORw=="}


def test_every_arrow_type_round_trips_into_flagged_and_cleaned(tmp_path):
    """Timestamps, decimals, dates, times, durations, binary and maps: flagged.jsonl
    writes each in its documented JSON form, cleaned.parquet keeps the schema."""
    import datetime
    import decimal

    img = tmp_path / "x.png"
    img.write_bytes(b"x")
    conv = [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]
    table = pa.table({
        "id": ["r0", "r1"], "image": ["x.png", "x.png"], "conversations": [conv, conv],
        "at": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, 6000)] * 2, pa.timestamp("ns", tz="UTC")),
        "price": pa.array([decimal.Decimal("1.25"), decimal.Decimal("-0.50")], pa.decimal128(5, 2)),
        "day": pa.array([datetime.date(2024, 1, 2)] * 2, pa.date32()),
        "time": pa.array([datetime.time(1, 2, 3)] * 2, pa.time64("us")),
        "took": pa.array([datetime.timedelta(milliseconds=1500)] * 2, pa.duration("ms")),
        "blob": pa.array([b"\x00\x01", b"\xff"], pa.binary()),
        "tags": pa.array([[("k", 1)], []], pa.map_(pa.string(), pa.int32())),
    })
    p = tmp_path / "d.parquet"
    pq.write_table(table, p)
    ds = read_dataset(p)
    row = json.loads(render_flagged(ds, [{"index": 0, "id": ds.samples[0].id, "score": 0.5}]))["record"]
    assert row["at"] == "2024-01-02T03:04:05.006000+00:00" and row["price"] == "1.25"
    assert row["day"] == "2024-01-02" and row["time"] == "01:02:03" and row["took"] == {"$seconds": 1.5}
    assert row["blob"] == {"$base64": "AAE="} and row["tags"] == [["k", 1]]
    cleaned = tmp_path / "cleaned.parquet"
    cleaned.write_bytes(render_cleaned(ds, [1]))
    back = pq.read_table(cleaned)
    assert back.schema == table.schema and back.to_pylist() == table.slice(1).to_pylist()
