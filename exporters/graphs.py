"""The attention-producing graph of each exportable family, and its input contract.

A graph maps a batch (pixels, token ids, attention mask, and for Qwen2-VL the
precomputed M-RoPE and vision positions) to `rows`: per decoder layer, the fp32
softmax row of the last prompt position over every key, (B, L, H, S).
bye-audit derives its features (entropies, masses) from `rows` in NumPy,
exactly as with the torch backend.

The stock `forward` of these classes does not export (a placeholder check,
`.tolist()` over grids, a batch size baked into a split), so each wrapper runs
vision tower, projector, feature placement and decoder explicitly. The
inputs and `feeds` (the family's processor output turned into the graph's
inputs, from the model's config, never its weights) are the runtime's:
auditor/extract/onnx_graph.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from auditor.extract.onnx_graph import FEEDS, INPUTS
from auditor.models.capture import capturing, last_prompt_position


def _place(embeds: torch.Tensor, features: torch.Tensor, is_image: torch.Tensor) -> torch.Tensor:
    """Image features into the image-token slots, in order, without masked_scatter.

    embeds: (B, S, D); features: (B, T, D), T image tokens per sample; is_image: (B, S) bool
    with exactly T True per row. Returns (B, S, D).
    """
    slot = (torch.cumsum(is_image.long(), -1) - 1).clamp(min=0)
    slot = torch.minimum(slot, torch.full_like(slot, features.shape[1] - 1))
    placed = torch.gather(features, 1, slot[..., None].expand(-1, -1, features.shape[-1]))
    return torch.where(is_image[..., None], placed.to(embeds.dtype), embeds)


def _decoder_rows(model: torch.nn.Module, modules: list[torch.nn.Module], embeds: torch.Tensor,
                  attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Run the decoder on `embeds` (B, S, D) with capture on; rows (B, L, H, S)
    fp32. The entropies are computed from them in NumPy, as with the torch
    backend (analysis/entropy.py): one implementation of the maths."""
    with capturing(modules, last_prompt_position(attention_mask)) as cap:
        model.model.language_model(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False,
                                   **kwargs)
    return torch.stack(cap.rows, dim=1)


class LlavaGraph(torch.nn.Module):
    """LLaVA-1.5: CLIP tower -> selected hidden layer(s) -> projector -> decoder."""

    def __init__(self, model: torch.nn.Module, modules: list[torch.nn.Module]):
        super().__init__()
        self.model, self.modules_ = model, modules

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        cfg, inner = self.model.config, self.model.model
        hidden = inner.vision_tower(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        layers = cfg.vision_feature_layer
        layers = [layers] if isinstance(layers, int) else list(layers)
        picked = [hidden[i][:, 1:] if cfg.vision_feature_select_strategy == "default" else hidden[i]
                  for i in layers]
        features = inner.multi_modal_projector(torch.cat(picked, dim=-1))
        is_image = input_ids == cfg.image_token_id
        embeds = _place(inner.get_input_embeddings()(input_ids), features, is_image)
        return _decoder_rows(self.model, self.modules_, embeds, attention_mask)


class Qwen2VLGraph(torch.nn.Module):
    """Qwen2-VL: patch embed -> ViT blocks (rotary, full attention within each
    image) -> 2x2 merger -> decoder with M-RoPE.

    Every image of a call has the same patch grid, so the images form a batch
    axis and each block's attention is one batched SDPA (the model's own
    code splits a flat sequence with `.tolist()`, which does not export).
    """

    def __init__(self, model: torch.nn.Module, modules: list[torch.nn.Module]):
        super().__init__()
        self.model, self.modules_ = model, modules

    def forward(self, pixel_values: torch.Tensor, vision_position_ids: torch.Tensor,
                input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

        cfg, visual = self.model.config, self.model.model.visual
        b, p = pixel_values.shape[0], pixel_values.shape[1]
        x = visual.patch_embed(pixel_values.reshape(b * p, -1)).reshape(b, p, -1)  # (B, P, E)
        cos, sin = visual.rotary_pos_emb(x, vision_position_ids)  # (P, head_dim) each
        for block in visual.blocks:
            attn = block.attn
            qkv = attn.qkv(block.norm1(x)).reshape(b, p, 3, attn.num_heads, -1)
            q, k = apply_rotary_pos_emb_vision(qkv[:, :, 0], qkv[:, :, 1], cos, sin)  # (B, P, H, d)
            out = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), qkv[:, :, 2].transpose(1, 2), scale=attn.scaling)
            x = x + attn.proj(out.transpose(1, 2).reshape(b, p, -1))
            x = x + block.mlp(block.norm2(x))
        merge = visual.spatial_merge_size ** 2
        features = visual.merger(x.reshape(b * p, -1)).reshape(b, p // merge, -1)
        inner = self.model.model
        is_image = input_ids == cfg.image_token_id
        embeds = _place(inner.get_input_embeddings()(input_ids), features, is_image)
        return _decoder_rows(self.model, self.modules_, embeds, attention_mask,
                             position_ids=position_ids)


@dataclass(frozen=True)
class GraphSpec:
    """One family's graph: the wrapper, its inputs with their dynamic axes, and
    `feeds(processor batch, config) -> [(sample indices, inputs)]`."""

    wrapper: type[torch.nn.Module]
    inputs: dict[str, dict[int, str]]  # input name -> {axis: dynamic dimension name}
    feeds: Callable[[dict[str, Any], Any], list]


GRAPHS: dict[str, GraphSpec] = {
    "llava": GraphSpec(LlavaGraph, INPUTS["llava"], FEEDS["llava"]),
    "qwen2_vl": GraphSpec(Qwen2VLGraph, INPUTS["qwen2_vl"], FEEDS["qwen2_vl"]),
}
