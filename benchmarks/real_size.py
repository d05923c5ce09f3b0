"""A 7B-shaped audit on this machine: peak memory against the weights' size.

    .venv/bin/python -m benchmarks.real_size build --out /tmp/llava-7b-shaped        # ~14 GB, not committed
    .venv/bin/python -m benchmarks.real_size measure --ckpt /tmp/llava-7b-shaped [--samples 4]

`build` writes, outside the repository, a checkpoint with the configuration of
llava-hf/llava-1.5-7b-hf (CLIP ViT-L/14 at 336 px: 576 image tokens;
Llama-2-7B decoder: 32 layers, hidden 4096, MLP 11008, 32 heads, vocabulary
32064), random weights in bf16 (N(0, 0.02); norms 1), sharded safetensors with
an index as the hub stores them, and a PEFT LoRA adapter of rank 128 on every
linear layer of the decoder (LLaVA-1.5's LoRA recipe: r 128, alpha 256), with a
processor assembled locally (the local word-level tokenizer; the image token id
is that tokenizer's, every tensor size is the real model's). Speed and memory
do not depend on trained weights.

`measure` audits `--samples` digit images (336 px) with `bye-audit audit
--dtype bfloat16 --adapter ...` in a child process, sampling its memory every
0.2 s: peak RSS (VmHWM: includes the safetensors pages mapped while loading,
which the kernel can drop) and peak anonymous memory (RssAnon: what the process
itself holds), both against the weights' size on disk; and the seconds per
sample of stage 1, read from the audit's own step lines. It prints a JSON
record and a Markdown row for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHARD_BYTES = 5 * 2 ** 30  # the hub's usual shard size ("5GB")
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


# llava-hf/llava-1.5-7b-hf's sizes; "smoke" keeps every part of the layout at toy size (the script's test).
SHAPES = {
    "llava-1.5-7b": dict(vision_hidden=1024, vision_mlp=4096, vision_layers=24, vision_heads=16,
                         projection=768,
                         vocab=32064, hidden=4096, mlp=11008, layers=32, heads=32, kv_heads=32, lora_r=128),
    # Qwen/Qwen2-VL-7B-Instruct's sizes (ViT of 32 blocks, 1280 wide; Qwen2 decoder, GQA 28/4 heads)
    "qwen2-vl-7b": dict(family="qwen2_vl", vision_hidden=1280, vision_layers=32, vision_heads=16,
                        vocab=152064,
                        hidden=3584, mlp=18944, layers=28, heads=28, kv_heads=4, lora_r=128),
    "smoke": dict(vision_hidden=32, vision_mlp=64, vision_layers=2, vision_heads=2, projection=32,
                  vocab=512, hidden=64, mlp=128, layers=2, heads=4, kv_heads=4, lora_r=8),
}


def llava_config(shape: str, image_token_id: int, pad_token_id: int):
    """llava-hf/llava-1.5-7b-hf's configuration (its config.json, as numbers), or
    the smoke test's toy sizes; 336 px images in 14 px patches either way."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    z = SHAPES[shape]
    vision = CLIPVisionConfig(hidden_size=z["vision_hidden"], intermediate_size=z["vision_mlp"],
                              num_hidden_layers=z["vision_layers"], num_attention_heads=z["vision_heads"],
                              image_size=336, patch_size=14, projection_dim=z["projection"],
                              hidden_act="quick_gelu", layer_norm_eps=1e-5)
    text = LlamaConfig(vocab_size=z["vocab"], hidden_size=z["hidden"], intermediate_size=z["mlp"],
                       num_hidden_layers=z["layers"], num_attention_heads=z["heads"],
                       num_key_value_heads=z["kv_heads"], max_position_embeddings=4096,
                       rms_norm_eps=1e-5, pad_token_id=pad_token_id, tie_word_embeddings=False)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                       projector_hidden_act="gelu", vision_feature_layer=-2,
                       vision_feature_select_strategy="default", image_seq_length=576,
                       tie_word_embeddings=False)


def _random(shape: tuple[int, ...], name: str, gen):
    import torch

    if name.endswith(("norm.weight", "layernorm.weight", "layer_norm.weight", "layer_norm1.weight",
                      "layer_norm2.weight", "pre_layrnorm.weight", "post_layernorm.weight", "norm1.weight",
                      "norm2.weight", "ln_q.weight")):
        return torch.ones(shape, dtype=torch.bfloat16)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=torch.bfloat16)
    return (torch.randn(shape, generator=gen, dtype=torch.float32) * 0.02).to(torch.bfloat16)


def _write_sharded(entries: list[tuple[str, tuple[int, ...]]], out: Path, seed: int,
                   prefix: str = "model") -> int:
    """Random bf16 tensors for (name, shape) entries, in shards of at most
    SHARD_BYTES, with the index file transformers reads. Returns the bytes written."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    shards, current, size = [], [], 0
    for name, shape in entries:
        nbytes = 2 * math.prod(shape)
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards, start=1):
        fname = f"{prefix}-{k:05d}-of-{len(shards):05d}.safetensors"
        tensors = {name: _random(shape, name, gen) for name, shape in shard}
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        total += sum(t.numel() * 2 for t in tensors.values())
        weight_map.update({name: fname for name in tensors})
        del tensors
        print(f"real_size: wrote {fname}", file=sys.stderr, flush=True)
    (out / f"{prefix}.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return total


def qwen2_vl_config(shape: str, tokenizer):
    """Qwen/Qwen2-VL-7B-Instruct's configuration (its config.json, as numbers)."""
    from transformers import Qwen2VLConfig

    z, ids = SHAPES[shape], tokenizer.convert_tokens_to_ids
    return Qwen2VLConfig(
        text_config=dict(vocab_size=z["vocab"], hidden_size=z["hidden"], intermediate_size=z["mlp"],
                         num_hidden_layers=z["layers"], num_attention_heads=z["heads"],
                         num_key_value_heads=z["kv_heads"], max_position_embeddings=32768, rms_norm_eps=1e-6,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                          "mrope_section": [16, 24, 24]},
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False),
        vision_config=dict(depth=z["vision_layers"], embed_dim=z["vision_hidden"], hidden_size=z["hidden"],
                           num_heads=z["vision_heads"], mlp_ratio=4, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, in_channels=3),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False)


def _qwen2_vl_parts(shape: str):
    """(config, model class, save_processor(folder)) of the Qwen2-VL shape: the
    local tokenizer, the PIL image processor at 336 x 336 px (144 image tokens)
    and the chat template, as a checkpoint without a buildable combined processor."""
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from tinyworld.digits import DIGIT_WORDS, QUESTIONS
    from tinyworld.tokenizer import train_word_tokenizer

    tokenizer = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS), style="qwen")

    def save(folder: Path) -> None:
        tokenizer.save_pretrained(folder)
        Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                 size={"shortest_edge": 336 * 336,
                                       "longest_edge": 336 * 336}).save_pretrained(folder)
        (folder / "chat_template.jinja").write_text(tokenizer.chat_template)

    return qwen2_vl_config(shape, tokenizer), Qwen2VLForConditionalGeneration, save


def build(out: Path, shape: str = "llava-1.5-7b", seed: int = 0) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import LlavaForConditionalGeneration

    from tinyworld.digits import DIGIT_WORDS, QUESTIONS
    from tinyworld.models import build_processor
    from tinyworld.tokenizer import IMAGE_TOKEN, train_word_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    if SHAPES[shape].get("family") == "qwen2_vl":
        config, model_class, save_processor = _qwen2_vl_parts(shape)
    else:
        tokenizer = train_word_tokenizer(list(QUESTIONS) + list(DIGIT_WORDS))
        config = llava_config(shape, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), tokenizer.pad_token_id)
        model_class = LlavaForConditionalGeneration

        def save_processor(folder: Path) -> None:
            build_processor(tokenizer, _Spec336()).save_pretrained(folder)
    with torch.device("meta"):
        skeleton = model_class(config)
    entries = [(n, tuple(t.shape)) for n, t in skeleton.state_dict().items()]
    model_dir = out / "model"
    model_dir.mkdir(exist_ok=True)
    weights = _write_sharded(entries, model_dir, seed)
    config.save_pretrained(model_dir)
    save_processor(model_dir)

    r = SHAPES[shape]["lora_r"]
    lora = LoraConfig(r=r, lora_alpha=2 * r, target_modules=LORA_TARGETS, lora_dropout=0.0, bias="none")
    with torch.device("meta"):
        peft_model = get_peft_model(skeleton, lora)
    adapter_entries = [(n, tuple(t.shape)) for n, t in get_peft_model_state_dict(peft_model).items()]
    adapter_dir = out / "adapter"
    adapter_dir.mkdir(exist_ok=True)
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed + 1)
    save_file({n: (torch.randn(s, generator=gen) * 0.01).to(torch.bfloat16) for n, s in adapter_entries},
              str(adapter_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    peft_model.peft_config["default"].save_pretrained(adapter_dir)
    record = {"shape": shape, "weights_bytes": weights, "parameters": sum(math.prod(s) for _, s in entries),
              "adapter_parameters": sum(math.prod(s) for _, s in adapter_entries),
              "adapter_bytes": (adapter_dir / "adapter_model.safetensors").stat().st_size}
    (out / "build.json").write_text(json.dumps(record, indent=2))
    return record


class _Spec336:
    """LLaVA-1.5's image geometry for the processor: 336 px, patch 14, 576 tokens."""

    image_size = 336
    patch_size = 14

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def _memory(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and RssAnon of `pid`, in KiB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon", "VmRSS"):
                out[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def _seconds(text: str) -> int:
    """The audit's elapsed-time stamp ("7 s", "10 min 11 s", "1 h 02 min") in seconds."""
    units = {"h": 3600, "min": 60, "s": 1}
    parts = text.split()
    return sum(int(n) * units[u] for n, u in zip(parts[::2], parts[1::2]))


def measure(ckpt: Path, samples: int, extra: list[str]) -> dict:
    from tinyworld.fixtures import write_digits_dataset

    build_record = json.loads((ckpt / "build.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="real-size-"))
    data, _ = write_digits_dataset(work / "data", n=samples, poison_rate=0.0, size=336)
    cmd = [str(Path(sys.executable).parent / "bye-audit"), "audit", "--model", str(ckpt / "model"),
           "--adapter", str(ckpt / "adapter"), "--data", str(data), "--out", str(work / "out"),
           "--dtype", "bfloat16", "--batch-size", "1", "--min-samples", "2", "--fit-sample", "2",
           "--no-progress", *extra]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"VmHWM": 0, "RssAnon": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            m = _memory(proc.pid)
            for k in peak:
                peak[k] = max(peak[k], m.get(k, 0))

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    stdout, stderr = proc.communicate()
    stop.set()
    t.join()
    wall = time.monotonic() - started
    steps = {m.group(2): _seconds(m.group(1))
             for m in re.finditer(r"^bye-audit: \[([^\]]+)\] (.*)$", stderr, re.M)}
    stage1 = [v for k, v in steps.items() if k.startswith("stage 1")]
    after = [v for k, v in steps.items() if k.startswith("stages 2-3")]
    weights = build_record["weights_bytes"]
    record = {
        "shape": build_record["shape"], "exit_code": proc.returncode, "samples": samples,
        "wall_s": round(wall, 1),
        "weights_gib": round(weights / 2 ** 30, 2),
        "peak_rss_gib": round(peak["VmHWM"] / 2 ** 20, 2),
        "peak_anon_gib": round(peak["RssAnon"] / 2 ** 20, 2),
        "peak_rss_vs_weights": round(peak["VmHWM"] * 1024 / weights, 2),
        "peak_anon_vs_weights": round(peak["RssAnon"] * 1024 / weights, 2),
        "stage1_s_per_sample": round((after[0] - stage1[0]) / samples, 1) if stage1 and after else None,
        "load_s": stage1[0] if stage1 else None,
        "steps_s": steps, "stderr_tail": stderr.strip().splitlines()[-3:],
        "stdout_tail": stdout.strip().splitlines()[-2:],
    }
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--shape", choices=sorted(SHAPES), default="llava-1.5-7b")
    b.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("measure")
    m.add_argument("--ckpt", type=Path, required=True)
    m.add_argument("--samples", type=int, default=4)
    m.add_argument("extra", nargs="*", help="more `bye-audit audit` options, after --")
    args = p.parse_args(argv)
    if args.cmd == "build":
        print(json.dumps(build(args.out, args.shape, args.seed), indent=2))
    else:
        r = measure(args.ckpt, args.samples, args.extra)
        print(json.dumps(r, indent=2))
        print(f"| {r['shape']} + LoRA | bf16 | {r['weights_gib']} | {r['peak_rss_gib']} "
              f"({r['peak_rss_vs_weights']}x) | {r['peak_anon_gib']} ({r['peak_anon_vs_weights']}x) | "
              f"{r['load_s']} | {r['stage1_s_per_sample']} | {r['exit_code']} |")


if __name__ == "__main__":
    main()
