"""Row-only attention capture through transformers' attention interface.

`bye_capture` computes each layer's output with SDPA, as the model normally
would, and separately the fp32 softmax row of one query position per sample
over all keys (after RoPE, with the real mask, grouped-query heads expanded).
Nothing S x S is kept: per layer only (B, H, S).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

CAPTURE_ATTENTION = "bye_capture"
# The same capture with an additive float mask instead of a boolean one: for the
# ONNX export, where a boolean mask becomes Where/IsNaN passes over every S x S
# score tensor (about a fifth of the graph's run time); the rows are the same.
CAPTURE_ATTENTION_ADDITIVE = "bye_capture_additive"


@dataclass
class _Capture:
    layer_of: dict[int, int]  # id(attention module) -> decoder layer index
    query_pos: torch.Tensor  # (B,) long
    rows: list[torch.Tensor | None] = field(default_factory=list)  # per layer (B, H, S)


_ACTIVE: ContextVar[_Capture | None] = ContextVar("bye_capture", default=None)


def query_rows(query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None,
               query_pos: torch.Tensor, scaling: float) -> torch.Tensor:
    """Softmax attention rows of one query position per sample, in fp32.

    query: (B, H, S, D); key: (B, Hkv, S_k, D) with H % Hkv == 0; mask: None
    (plain causal), bool (B, 1, S, S_k) with True = attend, or additive float
    of the same shape; query_pos: (B,). Returns (B, H, S_k).
    """
    b = torch.arange(query.shape[0], device=query.device)
    q = query[b, :, query_pos].float()  # (B, H, D)
    k = key.float().repeat_interleave(query.shape[1] // key.shape[1], dim=1)  # (B, H, S_k, D)
    scores = torch.einsum("bhd,bhsd->bhs", q, k) * scaling
    s_k = key.shape[2]
    if mask is None:
        allowed = torch.arange(s_k, device=query.device)[None, :] <= query_pos[:, None]
        scores = scores.masked_fill(~allowed[:, None, :], float("-inf"))
    elif mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask[b, 0, query_pos][:, None, :], float("-inf"))
    else:
        scores = scores + mask[b, 0, query_pos][:, None, :].float()
    return torch.softmax(scores, dim=-1)


def _capture_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                       **kwargs):
    out = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                 scaling=scaling, **kwargs)
    cap = _ACTIVE.get()
    if cap is not None and id(module) in cap.layer_of:
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        cap.rows[cap.layer_of[id(module)]] = query_rows(query, key, attention_mask,
                                                        cap.query_pos, scale)
    return out


AttentionInterface.register(CAPTURE_ATTENTION, _capture_attention)
AttentionMaskInterface.register(CAPTURE_ATTENTION, sdpa_mask)
AttentionInterface.register(CAPTURE_ATTENTION_ADDITIVE, _capture_attention)
AttentionMaskInterface.register(CAPTURE_ATTENTION_ADDITIVE, eager_mask)


@contextmanager
def capturing(modules: list[torch.nn.Module], query_pos: torch.Tensor
              ) -> Iterator[_Capture]:
    """Within the block, forward passes record the rows of `query_pos` for `modules`
    (decoder self-attention, layer 0 first) into the yielded object's `rows`."""
    cap = _Capture({id(m): i for i, m in enumerate(modules)}, query_pos, [None] * len(modules))
    token = _ACTIVE.set(cap)
    try:
        yield cap
    finally:
        _ACTIVE.reset(token)


def last_prompt_position(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row, for left or right padding. (B, S) -> (B,)."""
    s = attention_mask.shape[1]
    return s - 1 - attention_mask.flip(-1).long().argmax(-1)
