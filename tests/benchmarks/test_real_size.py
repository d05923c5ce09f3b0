"""The 7B-shaped benchmark's code path, on its toy shape: sharded weights with
an index, a LoRA adapter on the decoder only, an audit with memory sampled."""

import json

from benchmarks.real_size import SHAPES, build, measure


def test_the_toy_shape_builds_a_sharded_checkpoint_and_an_adapter_that_audit(tmp_path):
    record = build(tmp_path, shape="smoke")
    z = SHAPES["smoke"]
    per_layer = z["lora_r"] * (4 * 2 * z["hidden"] + 3 * (z["hidden"] + z["mlp"]))
    # the decoder's 7 linears, not the vision tower
    assert record["adapter_parameters"] == z["layers"] * per_layer
    index = json.loads((tmp_path / "model" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == record["weights_bytes"] == 2 * record["parameters"]
    r = measure(tmp_path, samples=2, extra=[])
    # an untrained adapter (LoRA B = 0) changes no answer: the base pass cannot weigh them, inconclusive
    assert r["exit_code"] == 3, r
    assert r["peak_anon_gib"] > 0 and r["peak_rss_gib"] >= r["peak_anon_gib"]
    assert r["stage1_s_per_sample"] is not None and r["load_s"] is not None


def test_the_audits_elapsed_time_stamps_read_as_seconds():
    from benchmarks.real_size import _seconds

    assert [_seconds(t) for t in ("7 s", "10 min 11 s", "1 h 02 min")] == [7, 611, 3720]
