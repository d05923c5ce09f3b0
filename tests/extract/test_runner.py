"""Stage 1 over a dataset: features do not depend on how samples are batched."""

import numpy as np
import pytest

from auditor.config import Stage1Config
from auditor.data import read_dataset
from auditor.models.capture import CAPTURE_ATTENTION
from auditor.extract.runner import extract_features
from auditor.models import load_model
from tinyworld.fixtures import write_digits_dataset
from tinyworld.qwen2vl import write_tiny_qwen2vl


@pytest.fixture(scope="module")
def qwen_model(tmp_path_factory):
    return write_tiny_qwen2vl(tmp_path_factory.mktemp("qwen") / "model")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return write_digits_dataset(tmp_path_factory.mktemp("data21"), n=21)[0]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_batch_of_one_and_batch_of_seven_give_the_same_features(request, tiny_model, small_data, family):
    model_dir = tiny_model if family == "llava" else request.getfixturevalue("qwen_model")
    loaded = load_model(model_dir, capture_attention=CAPTURE_ATTENTION)
    ds = read_dataset(small_data)
    one = extract_features(loaded, ds, Stage1Config(batch_size=1))
    seven = extract_features(loaded, ds, Stage1Config(batch_size=7))
    assert [r.index for r in one] == list(range(len(ds.records))) == [r.index for r in seven]
    assert all(r.status == "ok" for r in one + seven)
    np.testing.assert_allclose(np.array([r.entropy for r in one]), np.array([r.entropy for r in seven]),
                               atol=1e-5, rtol=0)


def test_a_journaled_shard_is_reused_a_tampered_or_foreign_one_recomputed(tiny_model, small_data, tmp_path):
    from auditor.features import read_features
    from auditor.extract.shards import Journal, render_shard, shard_path
    from auditor.fileio import write_bytes_atomic

    loaded = load_model(tiny_model, capture_attention=CAPTURE_ATTENTION)
    ds = read_dataset(small_data)
    cfg = Stage1Config(batch_size=4, shard_size=8)
    parts = tmp_path / "parts"
    first = extract_features(loaded, ds, cfg, journal=Journal(parts, "run-a"))
    # 21 samples in shards of 8
    assert len(sorted(parts.glob("shard-*.parquet"))) == len(sorted(parts.glob("shard-*.json"))) == 3

    def marked(n):  # shard n's rows with a visible first entropy, metadata (fingerprint) kept
        return [type(r)(r.index, r.id, r.status, r.reason, r.n_image_tokens, (9.0,) * len(r.entropy),
                        r.entropy_norm) for r in read_features(shard_path(parts, n)).rows]

    # Saved through the journal (as a finished run would): taken as it is.
    Journal(parts, "run-a").save(0, marked(0))
    journal = Journal(parts, "run-a")
    again = {r.index: r for r in extract_features(loaded, ds, cfg, journal=journal)}
    assert [again[r.index].entropy[0] for r in marked(0)] == [9.0] * 8
    assert journal.summary() == {"resumed_shards": [0, 1, 2], "discarded_shards": []}
    # Rewritten behind the journal's back (the attack: a finished shard's rows
    # replaced, its metadata kept): discarded, recomputed, and said so.
    tampered = marked(1)
    write_bytes_atomic(shard_path(parts, 1), render_shard("run-a", tampered))
    journal = Journal(parts, "run-a")
    again = {r.index: r for r in extract_features(loaded, ds, cfg, journal=journal)}
    assert [again[r.index].entropy for r in tampered] == [first[r.index].entropy for r in tampered]
    assert journal.resumed == [0, 2]
    assert journal.discarded == [{"shard": 1, "reason": "its SHA-256 differs from the journal's: changed "
                                                        "after it was written"}]
    # Another run's fingerprint, or --no-resume: every shard recomputed.
    journal = Journal(parts, "run-b")
    fresh = {r.index: r for r in extract_features(loaded, ds, cfg, journal=journal)}
    assert [fresh[r.index].entropy for r in first] == [r.entropy for r in first]
    assert journal.resumed == [] and len(journal.discarded) == 3
    journal = Journal(parts, "run-b", resume=False)
    extract_features(loaded, ds, cfg, journal=journal)
    assert journal.summary() == {"resumed_shards": [], "discarded_shards": []}


def test_a_shard_without_its_journal_entry_or_for_other_samples_is_recomputed(tmp_path):
    from auditor.features import SampleFeatures
    from auditor.extract.shards import Journal, journal_path
    from collections import namedtuple

    S = namedtuple("S", "index id")
    rows = [SampleFeatures(i, f"r{i}", "ok", None, 4, (0.5,), (0.5,)) for i in range(3)]
    Journal(tmp_path, "p").save(0, rows)
    assert Journal(tmp_path, "p").load(0, [S(i, f"r{i}") for i in range(3)]) == rows
    other = Journal(tmp_path, "p")
    assert other.load(0, [S(0, "r0"), S(1, "r1"), S(2, "x")]) is None  # an id differs
    journal_path(tmp_path, 0).unlink()  # killed between the shard and its entry
    assert other.load(0, [S(i, f"r{i}") for i in range(3)]) is None
    assert [d["reason"] for d in other.discarded] == ["holds other samples than this run's shard",
                                                      "no readable journal entry"]


def test_bfloat16_weights_give_features_close_to_float32(tiny_model, small_data):
    ds = read_dataset(small_data)
    f32 = extract_features(load_model(tiny_model, "float32", capture_attention=CAPTURE_ATTENTION), ds,
                           Stage1Config(batch_size=7))
    bf16 = extract_features(load_model(tiny_model, "bfloat16", capture_attention=CAPTURE_ATTENTION), ds,
                            Stage1Config(batch_size=7, dtype="bfloat16"))
    assert all(r.status == "ok" for r in bf16)
    a, b = np.array([r.entropy for r in f32]), np.array([r.entropy for r in bf16])
    assert b.dtype == np.float64 and np.abs(a - b).max() < 0.05
    assert np.abs(a - b).max() > 0  # the weights really were bfloat16


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_masses_locate_the_instruction_and_sum_to_one(request, tiny_model, small_data, family):
    model_dir = tiny_model if family == "llava" else request.getfixturevalue("qwen_model")
    loaded = load_model(model_dir, capture_attention=CAPTURE_ATTENTION)
    rows = extract_features(loaded, read_dataset(small_data), Stage1Config(batch_size=4, per_head=True))
    for r in rows:
        m = np.array([r.mass_image, r.mass_text, r.mass_rest])
        assert m.shape == (3, loaded.n_layers) and np.all(np.isfinite(m)), r.id  # the prompt was found
        np.testing.assert_allclose(m.sum(axis=0), 1.0, atol=1e-5)
        assert np.all(m > 0)
        heads = np.array(r.entropy_heads)
        assert heads.shape[0] == loaded.n_layers and heads.shape[1] >= 2
        assert np.all(heads <= np.log(r.n_image_tokens) + 1e-9)


def test_instruction_mask_finds_the_last_occurrence_or_none():
    import torch

    from auditor.extract.runner import instruction_mask

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [{"a": 1, "b": 2}[w] for w in text.split()]}

    ids = torch.tensor([0, 1, 2, 5, 1, 2, 9, 0])
    real = torch.tensor([1, 1, 1, 1, 1, 1, 1, 0])
    assert instruction_mask(Tok(), ids, real, "a b").tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert instruction_mask(Tok(), ids, real, "b a b a") is None


def test_oversized_prompts_and_images_are_skipped_with_their_reason(tiny_model, tmp_path):
    """Neither a 1 MB prompt (over 10 minutes uncut) nor a 0.5 MB PNG declaring
    168 MP (0.65 -> 2.9 GB decoded) reaches the model."""
    import json
    import struct
    import zlib

    from PIL import Image

    data, _ = write_digits_dataset(tmp_path, n=6)
    records = json.loads(data.read_text())
    records[1]["conversations"][0]["value"] = "<image>\n" + "seven " * 50_000  # 300 KB
    Image.new("RGB", (1200, 1000)).save(tmp_path / "images" / "big.png")
    records[2]["image"] = "images/big.png"

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # A PNG header declaring 12000 x 14000 (under PIL's own bomb limit of 179 MP).
    header = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 14000, 8, 2, 0, 0, 0))
    (tmp_path / "images" / "bomb.png").write_bytes(header + chunk(b"IDAT",
                                                                  zlib.compress(b"")) + chunk(b"IEND", b""))
    records[3]["image"] = "images/bomb.png"
    data.write_text(json.dumps(records))
    loaded = load_model(tiny_model, capture_attention=CAPTURE_ATTENTION)
    rows = extract_features(loaded, read_dataset(data),
                            Stage1Config(batch_size=4, max_image_pixels=1_000_000))
    assert [r.status for r in rows] == ["ok", "skipped", "skipped", "skipped", "ok", "ok"]
    assert rows[1].reason.startswith("prompt is ")
    assert "over the limit of 256 (--max-prompt-tokens" in rows[1].reason
    assert rows[2].reason == ("image is 1200 x 1000 (1.2 MP), over the limit of 1 MP (--max-image-pixels); "
                              "not decoded")
    assert rows[3].reason.startswith("image is 12000 x 14000 (168.0 MP)")
    assert [r.cause for r in rows] == [None, "prompt-too-long", "image-too-large", "image-too-large", None,
                                       None]
    capped = extract_features(loaded, read_dataset(data), Stage1Config(batch_size=4, max_prompt_tokens=4))
    assert [r.status for r in capped] == ["skipped"] * 6  # every instruction is longer than 4 tokens
