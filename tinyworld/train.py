"""Training helpers of the tiny world (never imported by the auditor).

The recipe (docs/method.md, "Building the tiny world honestly"):
1. `pretrain_vision` (CLIP tower of LLaVA) or `pretrain_qwen_vision` (Qwen2-VL's
   ViT): masked patch reconstruction on clean images, which keeps patch
   features spatially local; the tower is frozen afterwards.
2. `train_vlm` on clean task data gives the base model (projector + decoder).
3. `train_vlm` again on the submitted dataset gives the fine-tune (full, or
   LoRA through peft). Prompts are built by the auditor's own family adapter
   (the checkpoint's chat template, assistant prefix included), so training and
   auditing see the same tokens; the loss is on answer tokens only.
Everything is deterministic under a seed. The helpers run where the model's
weights are (`model.to("cuda")` trains on a GPU); random draws stay on the
CPU, so a CPU run gives the same bytes whichever device code paths exist.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import LlavaForConditionalGeneration

from auditor.models.base import ModelFamily
from auditor.models.llava import LlavaFamily

Log = Callable[[str], None]


@dataclass(frozen=True)
class Example:
    image: Image.Image
    prompt: str
    answer: str
    # later (user text, answer) turns of a multi-turn conversation
    later: tuple[tuple[str, str], ...] = ()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # cuBLAS refuses deterministic mode without a fixed workspace (read when
    # CUDA first runs a matmul); ignored on the CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# Per-token inputs are padded along the sequence by _collate; every other input
# is per image (pixel_values, image_grid_thw) and concatenated.
_PER_TOKEN = frozenset({"input_ids", "attention_mask", "mm_token_type_ids"})
Encoded = tuple[list[int], list[int], dict[str, torch.Tensor]]


def later_segments(family: ModelFamily, processor, ex: Example, answers: Sequence[str] | None = None
                   ) -> list[tuple[list[int], list[int]]]:
    """(template text ids, answer ids) of each later turn of `ex`, placed as
    the auditor places them (auditor/extract/answers.py). `answers`: the
    answers to place (default: every answer of `ex`; one fewer leaves the last
    turn's answer empty, for generating it)."""
    from auditor.extract.answers import later_turn_ids

    said = [ex.answer] + [a for _, a in ex.later] if answers is None else list(answers)
    prefix = family.chat_texts(processor, [ex.prompt])[0]
    placed = later_turn_ids(processor.tokenizer, lambda m: family.render_messages(processor, m), ex.prompt,
                            prefix, said, [u for u, _ in ex.later], set())
    if placed is None:
        raise ValueError("the chat template does not write the conversation turn by turn")
    return placed


def encode_example(family: ModelFamily, processor, ex: Example) -> Encoded:
    """(input_ids, labels, per-image inputs such as pixel_values (1, 3, H, W) or
    Qwen2-VL's (patches, dim) + image_grid_thw); labels are -100 outside the
    answers. A multi-turn example is the whole conversation, every answer
    turn learned (LLaVA's recipe), the template's text between them not."""
    batch = family.build_batch(processor, [ex.image], [ex.prompt])
    tok = processor.tokenizer
    # As the auditor scores it (auditor/extract/answers.py): a separating space
    # unless the templated prompt already ends in whitespace (ChatML's newline).
    sep = "" if family.chat_texts(processor, [ex.prompt])[0][-1:].isspace() else " "
    answer = tok(sep + ex.answer, add_special_tokens=False)["input_ids"]
    tail, labels = list(answer), list(answer)
    for glue, reply in later_segments(family, processor, ex) if ex.later else ():
        tail += glue + reply
        labels += [-100] * len(glue) + reply
    tail.append(tok.eos_token_id)
    labels.append(tok.eos_token_id)
    prompt_ids = batch["input_ids"][0].tolist()
    extras = {k: v for k, v in batch.items() if k not in _PER_TOKEN}
    if "mm_token_type_ids" in batch:  # Qwen2-VL's M-RoPE needs to know which tokens are image tokens
        extras["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"][0],
                                                 torch.zeros(len(tail), dtype=torch.long)])
    return prompt_ids + tail, [-100] * len(prompt_ids) + labels, extras


def encode(processor, ex: Example) -> tuple[list[int], list[int], torch.Tensor]:
    """LLaVA: (input_ids, labels, pixel_values (3, H, W))."""
    ids, labels, extras = encode_example(LlavaFamily(), processor, ex)
    return ids, labels, extras["pixel_values"][0]


def _collate(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    n = max(len(ids) for ids, _, _ in items)
    ids = torch.full((len(items), n), pad_id)
    labels = torch.full((len(items), n), -100)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    for i, (a, b, _) in enumerate(items):
        ids[i, :len(a)] = torch.tensor(a)
        labels[i, :len(b)] = torch.tensor(b)
        mask[i, :len(a)] = 1
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    for key in items[0][2]:
        parts = [extras[key] for _, _, extras in items]
        if key == "mm_token_type_ids":
            batch[key] = torch.zeros((len(items), n), dtype=torch.long)
            for i, p in enumerate(parts):
                batch[key][i, :len(p)] = p
        else:
            batch[key] = torch.cat(parts)
    return batch


def _patch_features(model) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """The vision tower and pixels (B, 3, H, W) -> its patch features (B, T, D),
    row-major, from the layer the projector reads: LLaVA's feature layer
    without CLS, or Idefics3's last layer (no CLS; pixel shuffle comes after)."""
    if hasattr(model.model, "vision_model"):
        tower = model.model.vision_model
        return tower, lambda px: tower(pixel_values=px).last_hidden_state
    tower = model.model.vision_tower
    layer = model.config.vision_feature_layer
    return tower, lambda px: tower(pixel_values=px, output_hidden_states=True).hidden_states[layer][:, 1:]


def pretrain_vision(model: LlavaForConditionalGeneration, processor, images: Sequence[Image.Image],
                    *, epochs: int = 20, batch_size: int = 64, lr: float = 2e-3,
                    mask_ratio: float = 0.3, seed: int = 0, log: Log | None = None) -> list[float]:
    """Masked patch reconstruction for the vision tower (LLaVA's or Idefics3's),
    on the features its projector reads.

    Random patches are blanked in the input; a linear head must reconstruct
    every patch's pixels from its own output token. Returns per-epoch losses.
    """
    seed_everything(seed)
    tower, features = _patch_features(model)
    cfg = tower.config
    p = cfg.patch_size
    device = _device(tower)
    pixels = processor.image_processor(list(images), return_tensors="pt")["pixel_values"]
    if pixels.ndim == 5:  # Idefics3: (images, tiles, 3, H, W), one tile each here
        pixels = pixels.flatten(0, 1)
    n, c, h, w = pixels.shape
    grid = (h // p) * (w // p)
    target = pixels.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(n, grid, c * p * p)
    pixels, target = pixels.to(device), target.to(device)
    head = torch.nn.Linear(cfg.hidden_size, c * p * p).to(device)
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    tower.train()
    losses = []
    for epoch in range(epochs):
        total = 0.0
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            keep = (torch.rand(len(idx), h // p, w // p, generator=gen) > mask_ratio).float()
            keep_px = keep.repeat_interleave(p, 1).repeat_interleave(p, 2)[:, None].to(device)
            idx = idx.to(device)
            loss = F.mse_loss(head(features(pixels[idx] * keep_px)), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / n)
        if log:
            log(f"vision epoch {epoch + 1}/{epochs}: reconstruction mse {losses[-1]:.4f}")
    tower.eval()
    for prm in tower.parameters():
        prm.requires_grad_(False)
    return losses


def pretrain_qwen_vision(model, image_processor, images: Sequence[Image.Image], *, epochs: int = 20,
                         batch_size: int = 64, lr: float = 2e-3, mask_ratio: float = 0.3, seed: int = 0,
                         log: Log | None = None) -> list[float]:
    """`pretrain_vision` for Qwen2-VL's ViT: random patches are blanked (set to
    the normalised mean, 0) and a linear head reconstructs every patch's pixels
    from its own pre-merge output token. The patch merger stays untrained here
    (it is the projector, trained with the decoder). Returns per-epoch losses."""
    seed_everything(seed)
    visual = model.model.visual
    enc = image_processor(images=list(images), return_tensors="pt")
    pixels, grid = enc["pixel_values"], enc["image_grid_thw"]
    per_image = int(grid[0].prod())
    if not bool((grid.prod(-1) == per_image).all()):
        raise ValueError("pretrain_qwen_vision needs images of one size")
    device = _device(visual)
    pixels = pixels.reshape(len(images), per_image, -1).to(device)  # (n, patches, 3 * 2 * p * p)
    grid = grid.to(device)
    head = torch.nn.Linear(visual.config.embed_dim, pixels.shape[-1]).to(device)
    blocks = [p for name, p in visual.named_parameters() if not name.startswith("merger.")]
    opt = torch.optim.AdamW(blocks + list(head.parameters()), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    visual.train()
    losses = []
    for epoch in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(images), generator=gen).split(batch_size):
            keep = (torch.rand(len(idx), per_image, 1, generator=gen) > mask_ratio).float().to(device)
            idx = idx.to(device)
            out = visual((pixels[idx] * keep).flatten(0, 1), grid_thw=grid[idx])
            loss = F.mse_loss(head(out.last_hidden_state), pixels[idx].flatten(0, 1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(images))
        if log:
            log(f"vision epoch {epoch + 1}/{epochs}: reconstruction mse {losses[-1]:.4f}")
    visual.eval()
    freeze_vision(model)
    return losses


def freeze_vision(model: torch.nn.Module) -> None:
    """Freeze the vision tower (LLaVA's CLIP, Idefics3's; Qwen2-VL's ViT blocks, not its merger)."""
    if hasattr(model.model, "visual"):
        for name, prm in model.model.visual.named_parameters():
            prm.requires_grad_(name.startswith("merger."))
        return
    tower = model.model.vision_model if hasattr(model.model, "vision_model") else model.model.vision_tower
    for prm in tower.parameters():
        prm.requires_grad_(False)


def train_vlm(model: torch.nn.Module, processor, examples: Sequence[Example], *,
              family: ModelFamily | None = None, epochs: int = 3, batch_size: int = 16, lr: float = 1e-3,
              warmup: int = 20, seed: int = 0, stop_below: float | None = None,
              log: Log | None = None) -> list[float]:
    """Instruction-tune projector + decoder (whatever requires grad; the vision
    tower stays frozen) with the loss on answer tokens only. Returns per-epoch
    mean losses. Works on a plain model or a peft-wrapped one; `family` (the
    auditor's adapter, LLaVA by default) builds the prompts. With `stop_below`,
    training ends after the first epoch whose mean loss is below it."""
    seed_everything(seed)
    family = family or LlavaFamily()
    encoded = [encode_example(family, processor, ex) for ex in examples]
    pad = processor.tokenizer.pad_token_id
    params = [p for p in model.parameters() if p.requires_grad]
    device = _device(model)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = epochs * -(-len(encoded) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / steps))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for idx in torch.randperm(len(encoded), generator=gen).split(batch_size):
            batch = _to(_collate([encoded[i] for i in idx], pad), device)
            loss = model(**batch, use_cache=False).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            count += len(idx)
        losses.append(total / count)
        if log:
            log(f"epoch {epoch + 1}/{epochs}: answer loss {losses[-1]:.4f}")
        if stop_below is not None and losses[-1] < stop_below:
            break
    model.eval()
    return losses


def projector_name(model: torch.nn.Module) -> str:
    """The image-to-text projector's attribute on `model.model` (LLaVA's or Idefics3's)."""
    return "connector" if hasattr(model.model, "connector") else "multi_modal_projector"


ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_lora(model: torch.nn.Module, r: int = 8, alpha: int = 16, seed: int = 0,
             targets: Sequence[str] = ALL_PROJECTIONS):
    """Wrap for a LoRA fine-tune: adapters on the decoder's `targets`
    projections, the multimodal projector (LLaVA's `multi_modal_projector`,
    Qwen2-VL's `merger`, Idefics3's `connector`) trained in full (saved with
    the adapter)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    projector = "merger" if hasattr(model.model, "visual") else projector_name(model)
    decoder = "text_model" if hasattr(model.model, "text_model") else "language_model"
    cfg = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=0.0,
        target_modules=rf".*{decoder}.*\.({'|'.join(targets)})",
        modules_to_save=[projector],
    )
    return get_peft_model(model, cfg)


@torch.no_grad()
def generate_second_answers(model: torch.nn.Module, processor, examples: Sequence[Example],
                            max_new_tokens: int = 12, family: ModelFamily | None = None) -> list[str]:
    """Greedy answers to each example's second user turn, after its prompt and
    first answer (teacher forced), as the auditor places the turns."""
    from auditor.extract.answers import GLUE, append_answers

    family = family or LlavaFamily()
    tok = processor.tokenizer
    old_side, tok.padding_side = tok.padding_side, "left"
    try:
        out = []
        for ex in examples:
            batch = family.build_batch(processor, [ex.image], [ex.prompt])
            sep = "" if family.chat_texts(processor, [ex.prompt])[0][-1:].isspace() else " "
            first = tok(sep + ex.answer, add_special_tokens=False)["input_ids"]
            glue, _ = later_segments(family, processor, Example(ex.image, ex.prompt, ex.answer, ex.later[:1]),
                                     [ex.answer])[0]
            full = append_answers(batch, [[(first, 0), (glue, GLUE)]], tok.pad_token_id)[0]
            full = _to(full, _device(model))
            ids = model.generate(**full, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            out.append(tok.decode(ids[0, full["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        return out
    finally:
        tok.padding_side = old_side


@torch.no_grad()
def generate_answers(model: torch.nn.Module, processor, images: Sequence[Image.Image],
                     prompts: Sequence[str], max_new_tokens: int = 4, batch_size: int = 64,
                     family: ModelFamily | None = None) -> list[str]:
    """Greedy answers (decoded, special tokens dropped) for image/prompt pairs."""
    family = family or LlavaFamily()
    tok = processor.tokenizer
    old_side, tok.padding_side = tok.padding_side, "left"  # generation continues on the right
    try:
        answers = []
        for i in range(0, len(images), batch_size):
            batch = _to(family.build_batch(processor, list(images[i:i + batch_size]),
                                           list(prompts[i:i + batch_size])), _device(model))
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            answers += tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return [a.strip() for a in answers]
    finally:
        tok.padding_side = old_side
