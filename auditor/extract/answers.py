"""The record's answer turns, scored in the same pass as the attention rows.

Under causal attention the row of the last prompt position sees nothing after
it, so the conversation appended after the prompt (the first answer, then each
later user turn and answer as the chat template writes them) leaves the
attention features as they were, and the same forward pass gives how likely
the model finds each answer (teacher forced over the whole conversation, as
training saw it). PaliGemma's answer is its suffix: causal, outside the
bidirectional prefix, so the prefix rows are unchanged too; it has no chat
template, so only its first answer is scored.
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


# One row's tail after its prompt: (token ids, turn) segments in order; turn
# 0, 1, ... for the answer turns (scored), GLUE for the template's text between
# them (the next user turn: teacher forced, not scored).
Segment = tuple[Sequence[int], int]
GLUE = -1


@dataclass(frozen=True)
class Tail:
    """What follows one row's prompt: its segments, how many answer turns were
    cut to the token bound, and why later turns were not scored (None: all were)."""

    segments: tuple[Segment, ...]
    n_turns: int  # answer turns in the record (scored or not)
    truncated: int = 0
    later_missing: str | None = None


def later_prefixes(render: Any, prompt: str, answers: Sequence[str], users: Sequence[str]) -> list[str]:
    """The chat template's text ending where each later answer starts: for
    turn k >= 1 the conversation up to its user turn, with the generation
    prompt. `render(messages)` applies the checkpoint's template (bounded);
    `answers`: every answer turn, first included; `users`: the later turns'
    user texts (len(answers) - 1)."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    out = []
    for answer, user in zip(answers, users):
        messages += [{"role": "assistant", "content": [{"type": "text", "text": answer.strip()}]},
                     {"role": "user", "content": [{"type": "text", "text": user}]}]
        out.append(render(messages))
    return out


def glue_text(previous_prefix: str, previous_answer: str, prefix: str) -> str | None:
    """The template's text between the end of the previous answer and the
    start of the next (end of turn, the user's next turn, the generation
    prompt): `prefix` after `previous_prefix` and the answer. None when the
    template does not render the conversation turn by turn (the earlier text
    rewritten), so the answer cannot be placed."""
    if not prefix.startswith(previous_prefix):
        return None
    rest = prefix[len(previous_prefix):]
    body = rest.lstrip()
    answer = previous_answer.strip()
    if not body.startswith(answer):
        return None
    return body[len(answer):]


def later_turn_ids(tokenizer: Any, render: Any, prompt: str, prefix: str, answers: Sequence[str],
                   users: Sequence[str], forbidden: set[int]) -> list[tuple[list[int], list[int]]] | None:
    """(template text ids, answer ids) of each later turn, placed as the chat
    template writes the conversation: `answers` every answer turn (the first
    included), `users` the later turns' user texts, `prefix` the templated
    prompt (ending where the first answer starts), `render(messages)` the
    bounded template. A turn with no answer in `answers` gets none (the
    prompt for generating it). None when the template does not write the
    conversation turn by turn."""
    texts = later_prefixes(render, prompt, answers[:len(users)], users)
    out, previous = [], prefix
    for k, text in enumerate(texts):
        glue = glue_text(previous, answers[k], text)
        if glue is None:
            return None
        reply = answer_ids(tokenizer, [text], [answers[k + 1]], forbidden)[0] if k + 1 < len(answers) else []
        out.append((tokenizer(glue, add_special_tokens=False)["input_ids"], reply))
        previous = text
    return out


def bound_tail(first: Sequence[int], later: Sequence[tuple[Sequence[int], Sequence[int]]],
               max_answer_tokens: int | None, room: int | None) -> Tail:
    """The row's tail within bounds: each answer cut to `max_answer_tokens`
    (counted), and the whole tail within `room` tokens (the context left after
    the prompt: the first answer is cut to it; a later turn is kept only if its
    template text and at least one answer token fit, its answer cut to what
    remains). `later`: (template text ids, answer ids) per later turn; None
    bounds: no bound."""
    cap, left = max_answer_tokens, room
    truncated = 0

    def fit(ids: Sequence[int]) -> Sequence[int]:
        nonlocal truncated, left
        keep = len(ids)
        if cap is not None:
            keep = min(keep, cap)
        if left is not None:
            keep = min(keep, left)
        if keep < len(ids):
            truncated += 1
        if left is not None:
            left -= keep
        return ids[:keep]

    segments: list[Segment] = [(fit(first), 0)]
    dropped = 0
    for turn, (glue, answer) in enumerate(later, start=1):
        if left is not None and (dropped or left < len(glue) + min(1, len(answer))):
            dropped += 1
            continue
        if left is not None:
            left -= len(glue)
        segments += [(glue, GLUE), (fit(answer), turn)]
    why = (f"{dropped} later answer turn{'s' if dropped > 1 else ''} beyond the model's context "
           f"({room} tokens after the prompt)") if dropped else None
    return Tail(tuple(segments), 1 + len(later), truncated, why)


def append_answers(batch: dict[str, Any], tails: Sequence[Sequence[Segment]], pad_id: int
                   ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's real tokens followed by its tail's segments, padded again on
    the side the batch was padded on (left if any row starts with padding).

    batch: a family's prefill inputs with input_ids and attention_mask (B, S);
    tails: per row its (ids, turn) segments (may be empty). Returns the new
    batch (B, S'), the last prompt position per row (B,), the targets (B, S'):
    an answer token's id where one is, -100 elsewhere, and the turn of each
    target (B, S'): its answer turn, -1 elsewhere.
    """
    ids = torch.as_tensor(batch["input_ids"])
    mask = torch.as_tensor(batch["attention_mask"]).bool()
    left = bool((~mask[:, 0]).any())
    lengths = mask.sum(1)
    flat = [[t for seg, _ in tail for t in seg] for tail in tails]
    labels = [[turn for seg, turn in tail for _ in seg] for tail in tails]
    width = int(max(int(n) + len(a) for n, a in zip(lengths.tolist(), flat)))
    b = len(tails)
    out = {k: v for k, v in batch.items() if k not in PER_TOKEN and k != "input_ids"}
    new_ids = torch.full((b, width), pad_id, dtype=ids.dtype)
    targets = torch.full((b, width), -100, dtype=torch.long)
    turn_of = torch.full((b, width), -1, dtype=torch.long)
    per_token = {k: torch.as_tensor(batch[k]) for k in PER_TOKEN if k in batch}
    new_tok = {k: torch.full((b, width), PER_TOKEN[k][1], dtype=v.dtype) for k, v in per_token.items()}
    query = torch.empty(b, dtype=torch.long)
    for j, (tokens, turns) in enumerate(zip(flat, labels)):
        n, a = int(lengths[j]), torch.as_tensor(tokens, dtype=ids.dtype)
        t = torch.as_tensor(turns, dtype=torch.long)
        start = width - n - len(a) if left else 0
        span = slice(start + n, start + n + len(a))
        new_ids[j, start:start + n] = ids[j][mask[j]]
        new_ids[j, span] = a
        targets[j, span] = torch.where(t >= 0, a.long(), -100)
        turn_of[j, span] = t
        query[j] = start + n - 1
        for k, v in per_token.items():
            new_tok[k][j, start:start + n] = v[j][mask[j]]
            new_tok[k][j, span] = PER_TOKEN[k][0]
    return {"input_ids": new_ids, **new_tok, **out}, query, targets, turn_of


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


def summarise(nll: np.ndarray, turn_of: np.ndarray, n_turns: Sequence[int]
              ) -> list[tuple[AnswerScore | None, ...]]:
    """Per row of token NLLs (B, K) with NaN off the answers, and the turn of
    each position (B, K), -1 off the answers: each of its `n_turns[b]` turns'
    scores, None for a turn with no answer token (empty, or not placed)."""
    out = []
    for row, turns, n in zip(nll, turn_of, n_turns):
        scores: list[AnswerScore | None] = []
        for t in range(n):
            tokens = row[(turns == t) & ~np.isnan(row)]
            scores.append(AnswerScore(len(tokens), float(tokens.mean()), float(tokens[0])) if len(tokens)
                          else None)
        out.append(tuple(scores))
    return out
