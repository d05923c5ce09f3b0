"""The record's answer turn, scored in the same pass as the attention rows.

Under causal attention the row of the last prompt position sees nothing after
it, so the answer appended after the prompt leaves the attention features as
they were, and the same forward pass gives how likely the model finds the
answer (teacher forced). PaliGemma's answer is its suffix: causal, outside
the bidirectional prefix, so the prefix rows are unchanged too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Per-token inputs a family's batch may carry: (value at an answer token, value at padding).
# token_type_ids is PaliGemma's (0 prefix, 1 suffix); mm_token_type_ids Qwen2-VL's (1 at image tokens).
PER_TOKEN = {"attention_mask": (1, 0), "token_type_ids": (1, 0), "mm_token_type_ids": (0, 0)}


@dataclass(frozen=True)
class AnswerScore:
    """The answer under one model: token count, mean token NLL and first-token NLL (nats)."""

    n_tokens: int
    nll: float
    first_nll: float


def answer_ids(tokenizer: Any, prefixes: Sequence[str | None], answers: Sequence[str], forbidden: set[int]
               ) -> list[list[int]]:
    """Token ids of each answer as it follows its prefix (the prompt as the
    chat template renders it, ending where the answer starts; None for a
    family without a template, whose answer is a separate suffix). An empty
    answer has none.

    After a template the answer is tokenised together with the prompt, as
    training on the whole conversation does (a separator space unless the
    prompt ends in whitespace), and the prompt's own tokens are cut off;
    where the two do not line up at the boundary, the answer alone. An
    answer that spells a special token (e.g. "<image>") is tokenised as plain
    text: it must not add an image token. `forbidden`: the special ids. The
    tokenizer runs once per batch of texts, not once per sample."""
    texts = [a.strip() for a in answers]
    seps = ["" if p is None or p[-1:].isspace() else " " for p in prefixes]
    out: list[list[int] | None] = [[] if not t else None for t in texts]
    templated = [k for k, (p, t) in enumerate(zip(prefixes, texts)) if p is not None and t]
    if templated:
        pre = tokenizer([prefixes[k] for k in templated], add_special_tokens=False)["input_ids"]
        joint = tokenizer([f"{prefixes[k]}{seps[k]}{texts[k]}" for k in templated],
                          add_special_tokens=False)["input_ids"]
        for k, p, j in zip(templated, pre, joint):
            tail = j[len(p):]
            if j[:len(p)] == p and tail and not forbidden.intersection(tail):
                out[k] = list(tail)
    alone = [k for k, ids in enumerate(out) if ids is None]
    if alone:
        ids = tokenizer([seps[k] + texts[k] for k in alone], add_special_tokens=False,
                        split_special_tokens=True)["input_ids"]
        for k, i in zip(alone, ids):
            out[k] = list(i)
    return [ids or [] for ids in out]


def append_answers(batch: dict[str, Any], answers: Sequence[Sequence[int]], pad_id: int
                   ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Each row's real tokens followed by its answer's, padded again on the
    side the batch was padded on (left if any row starts with padding).

    batch: a family's prefill inputs with input_ids and attention_mask (B, S);
    answers: B id lists (may be empty). Returns the new batch (B, S'), the
    last prompt position per row (B,) and the targets (B, S'): the answer
    token's id where one is, -100 elsewhere.
    """
    ids = torch.as_tensor(batch["input_ids"])
    mask = torch.as_tensor(batch["attention_mask"]).bool()
    left = bool((~mask[:, 0]).any())
    lengths = mask.sum(1)
    width = int(max(int(n) + len(a) for n, a in zip(lengths.tolist(), answers)))
    b = len(answers)
    out = {k: v for k, v in batch.items() if k not in PER_TOKEN and k != "input_ids"}
    new_ids = torch.full((b, width), pad_id, dtype=ids.dtype)
    targets = torch.full((b, width), -100, dtype=torch.long)
    per_token = {k: torch.as_tensor(batch[k]) for k in PER_TOKEN if k in batch}
    new_tok = {k: torch.full((b, width), PER_TOKEN[k][1], dtype=v.dtype) for k, v in per_token.items()}
    query = torch.empty(b, dtype=torch.long)
    for j, answer in enumerate(answers):
        n, a = int(lengths[j]), torch.as_tensor(list(answer), dtype=ids.dtype)
        start = width - n - len(a) if left else 0
        new_ids[j, start:start + n] = ids[j][mask[j]]
        new_ids[j, start + n:start + n + len(a)] = a
        targets[j, start + n:start + n + len(a)] = a.long()
        query[j] = start + n - 1
        for k, v in per_token.items():
            new_tok[k][j, start:start + n] = v[j][mask[j]]
            new_tok[k][j, start + n:start + n + len(a)] = PER_TOKEN[k][0]
    return {"input_ids": new_ids, **new_tok, **out}, query, targets


def logits_needed(query: torch.Tensor, width: int) -> int:
    """How many trailing positions' logits cover every answer token's
    prediction (the position before each): width - min(query)."""
    return int(width - int(query.min()))


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Per-position NLL (nats) of the target tokens, NaN where there is none.

    logits: (B, K, V), the last K positions of the sequence; targets: (B, S)
    with -100 where no answer token is. Returns (B, K - 1): entry t is the
    NLL of the token at position S - K + 1 + t, predicted from the logits one
    position before it. Computed in fp32 whatever the model's dtype."""
    k = logits.shape[1]
    labels = targets[:, targets.shape[1] - k + 1:].to(logits.device)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return nll.masked_fill(labels < 0, float("nan")).cpu().numpy()


def summarise(nll: np.ndarray) -> list[AnswerScore | None]:
    """Per row of token NLLs (B, K) with NaN off the answer: its score, None when
    the row has no answer token."""
    out: list[AnswerScore | None] = []
    for row in nll:
        tokens = row[~np.isnan(row)]
        out.append(AnswerScore(len(tokens), float(tokens.mean()), float(tokens[0])) if len(tokens) else None)
    return out
