import json

import pytest

from auditor.data import read_dataset, render_cleaned, render_flagged


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_flagged_and_cleaned_together_are_exactly_the_input(tmp_path, suffix):
    recs = [{"id": f"r{i}", "image": "x.png", "extra": {"k": [i, "é"]},
             "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}
            for i in range(7)]
    p = tmp_path / f"d{suffix}"
    p.write_text(json.dumps(recs) if suffix == ".json" else "".join(json.dumps(r) + "\n" for r in recs))
    ds = read_dataset(p)
    flagged = {1: 0.25, 4: 0.5}
    cleaned_bytes = render_cleaned(ds, [i for i in range(7) if i not in flagged])
    if suffix == ".json":
        cleaned = json.loads(cleaned_bytes)
    else:
        cleaned = [json.loads(ln) for ln in cleaned_bytes.decode().splitlines()]
    rows = [json.loads(ln) for ln in render_flagged(ds, flagged).decode().splitlines()]
    assert [r["score"] for r in rows] == [0.25, 0.5]
    assert [r["id"] for r in rows] == ["r1", "r4"]
    merged = {r["index"]: r["record"] for r in rows}
    kept = iter(cleaned)
    rebuilt = [merged[i] if i in merged else next(kept) for i in range(7)]
    assert rebuilt == recs
