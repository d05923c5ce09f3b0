"""Stage 1: one prefill pass per sample, per-layer entropy of the captured rows."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from ..analysis.entropy import attention_mass, head_entropies, image_attention_entropy, normalised_entropy
from ..causes import Cause
from ..config import Stage1Config
from ..data import Dataset, Sample
from ..models.base import ModelFamily
from ..features import SampleFeatures
from ..models.capture import last_prompt_position
from .answers import (AnswerScore, Tail, answer_ids, append_answers, bound_tail, later_turn_ids,
                      logits_needed, summarise, token_nll)
from .shards import Journal

Progress = Callable[[int], None]


class Stage1Model(Protocol):
    """What stage 1 needs from a backend: `models.LoadedModel` (torch) or
    `extract.onnx_backend.OnnxModel` (ONNX Runtime)."""

    family: ModelFamily
    processor: Any
    n_layers: int
    model_dir: Path
    adapter_dir: Path | None
    backend: str  # "torch" or "onnx"
    device: str  # torch device, or the ONNX Runtime provider really used
    onnx_path: Path | None

    @property
    def config(self) -> Any: ...

    def forward_rows(self, batch: dict[str, Any]) -> torch.Tensor | np.ndarray:
        """Captured rows (B, L, H, S), fp32, for a batch built by `family.build_batch`."""


class ImageTooLarge(ValueError):
    """The image declares more pixels than `max_image_pixels`; it was not decoded."""


def load_image(sample: Sample, max_pixels: int | None = None) -> Image.Image:
    """Decode the sample's image as RGB; OSError/ValueError on a bad file, and
    ImageTooLarge, before decoding, when its header declares more than `max_pixels`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below decides
        im = Image.open(sample.image_path)
    with im:
        w, h = im.size
        if max_pixels is not None and w * h > max_pixels:
            raise ImageTooLarge(f"image is {w} x {h} ({w * h / 1e6:.1f} MP), over the limit of "
                                f"{max_pixels / 1e6:g} MP (--max-image-pixels); not decoded")
        im.load()
        return im.convert("RGB")


def prompt_limit(loaded: Stage1Model, config: Stage1Config) -> int | None:
    """`config.max_prompt_tokens`, else the language model's context length (None when unknown)."""
    if config.max_prompt_tokens is not None:
        return config.max_prompt_tokens
    return context_length(loaded)


def context_length(loaded: Stage1Model) -> int | None:
    """The language model's context length (max_position_embeddings), None when unknown."""
    cfg = loaded.config
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    n = getattr(text, "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def prompt_lengths(tokenizer: Any, prompts: list[str]) -> list[int | str]:
    """Token count of each instruction (no special tokens), or why it cannot be tokenised."""
    try:
        return [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    except Exception as e:  # noqa: BLE001 - one bad string fails the batch call: find it
        if len(prompts) > 1:
            return [prompt_lengths(tokenizer, [p])[0] for p in prompts]
        return [f"prompt cannot be tokenised ({type(e).__name__}: {str(e).strip()[:200]})"]


@dataclass(frozen=True)
class Captured:
    """One sample's capture: the query rows on its image tokens, where each
    layer's row put its mass, and its answer's score under the submitted model
    and the base (None when not scored: see `answer_missing`)."""

    image_rows: np.ndarray  # (L, H, T)
    mass: np.ndarray  # (3, L): image, instruction text, rest; NaN text/rest if the prompt was not found
    answer: AnswerScore | None = None
    base_answer: AnswerScore | None = None
    answer_missing: str | None = None  # why the answer was not scored
    # The later answer turns (one entry per turn; None: not scored), why some
    # were not scored, and how many answer turns were cut to the token bound.
    later: tuple[AnswerScore | None, ...] = ()
    base_later: tuple[AnswerScore | None, ...] = ()
    later_missing: str | None = None
    truncated: int = 0


def instruction_mask(tokenizer, ids: torch.Tensor, real: torch.Tensor, prompt: str) -> torch.Tensor | None:
    """Positions of the user's instruction in one row of input ids (S,): the
    last occurrence of the prompt's own tokens among the real ones (tried as is
    and after a space, as tokenizers merge a leading space differently). None
    when it cannot be found, e.g. when the template rewrites the prompt."""
    seq = ids[real.bool()].tolist()
    for variant in (prompt, " " + prompt):
        sub = tokenizer(variant, add_special_tokens=False)["input_ids"]
        for start in range(len(seq) - len(sub), -1, -1):
            if sub and seq[start:start + len(sub)] == sub:
                mask = torch.zeros(len(seq), dtype=torch.bool)
                mask[start:start + len(sub)] = True
                out = torch.zeros_like(real, dtype=torch.bool)
                out[real.bool()] = mask
                return out
    return None


def scores_answers(loaded: Stage1Model) -> bool:
    """Whether this backend scores the answer turn in its pass (the ONNX graph
    outputs the attention rows only)."""
    return bool(getattr(loaded, "scores_answers", False))


@dataclass(frozen=True)
class AnswerBounds:
    """The answer turns' token bounds: each turn's (None: none), and the
    model's context length, which the whole conversation must fit (None: unknown)."""

    max_answer_tokens: int | None = None
    context: int | None = None


def sample_rows(loaded: Stage1Model, images: list[Image.Image], prompts: list[str],
                answers: list[str] | None = None, base: bool = False,
                later: list[tuple[tuple[str, str], ...]] | None = None,
                bounds: AnswerBounds = AnswerBounds()) -> list[Captured]:
    """One prefill pass over a batch (torch or ONNX Runtime); per sample the
    captured rows on its image tokens (L, H, T) and the per-layer attention mass
    on image / instruction / rest. With `answers` (the records' first answer
    turns) on a backend that scores them, the conversation follows its prompt
    in the same pass (answers.py): the first answer, then each of `later`'s
    (user text, answer) turns, every answer scored within `bounds`; with
    `base`, also under the base."""
    family = loaded.family
    batch = family.build_batch(loaded.processor, images, prompts)
    tok = loaded.processor.tokenizer
    if answers is not None and scores_answers(loaded):
        tails = conversation_tails(loaded, batch, prompts, answers, later or [()] * len(prompts), bounds)
        batch, query, targets, turn_of = append_answers(
            batch, [t.segments for t in tails], tok.pad_token_id if tok.pad_token_id is not None
            else tok.eos_token_id)
        keep = logits_needed(query, targets.shape[1])
        rows, logits = loaded.forward(batch, query, keep)
        turns = turn_of[:, turn_of.shape[1] - keep + 1:].numpy()
        n_turns = [t.n_turns for t in tails]
        scored = summarise(token_nll(logits, targets), turns, n_turns)
        on_base = (summarise(token_nll(loaded.base_logits(batch, keep), targets), turns, n_turns) if base
                   else [(None,) * n for n in n_turns])
        missing = [None if t.segments[0][0] else "no answer turn" for t in tails]
    else:
        query = last_prompt_position(torch.as_tensor(batch["attention_mask"]))
        rows = loaded.forward_rows(batch)  # (B, L, H, S), fp32 whatever the model's dtype
        why = "not scored: " + ("--no-answers" if scores_answers(loaded) else
                                "the ONNX graph outputs attention rows only")
        tails = [Tail((), 1 + len(turns), 0, why if turns else None)
                 for turns in (later or [()] * len(prompts))]
        scored = on_base = [(None,) * t.n_turns for t in tails]
        missing = [why] * len(prompts)
    image_mask = family.image_token_mask(loaded.config, batch).cpu()
    ids, real = torch.as_tensor(batch["input_ids"]).cpu(), torch.as_tensor(batch["attention_mask"]).cpu()
    prompt_part = real.bool() & (torch.arange(ids.shape[1])[None, :] <= query.cpu()[:, None])
    out = []
    for j in range(rows.shape[0]):
        text = instruction_mask(tok, ids[j], prompt_part[j], prompts[j])
        full = np.asarray(rows[j])
        mass = attention_mass(full, image_mask[j].numpy(),
                              (text & ~image_mask[j]).numpy()
                              if text is not None else np.zeros(len(ids[j]), bool))
        if text is None:
            mass[1:] = np.nan
        out.append(Captured(full[:, :, image_mask[j].numpy()], mass, scored[j][0], on_base[j][0], missing[j],
                            scored[j][1:], on_base[j][1:], tails[j].later_missing, tails[j].truncated))
    return out


def conversation_tails(loaded: Stage1Model, batch: dict[str, Any], prompts: list[str], answers: list[str],
                       later: list[tuple[tuple[str, str], ...]], bounds: AnswerBounds) -> list[Tail]:
    """Each row's answer turns as token ids after its prompt (answers.py),
    within `bounds`: the first answer after the prompt as the template renders
    it, each later turn after the template's text for it. A later turn that
    cannot be placed (no chat template; a template that rewrites the earlier
    turns; template text holding an image token) leaves the later turns
    unscored, with the reason."""
    family, proc = loaded.family, loaded.processor
    tok = proc.tokenizer
    image_id = getattr(loaded.config, "image_token_id", None)
    forbidden = set(tok.all_special_ids) | {image_id} - {None}
    prefixes = (family.chat_texts(proc, prompts) if family.uses_chat_template else [None] * len(prompts))
    first = answer_ids(tok, prefixes, answers, forbidden)
    lengths = torch.as_tensor(batch["attention_mask"]).sum(1).tolist()
    out = []
    for j, turns in enumerate(later):
        placed, why = [], None
        if turns and not family.uses_chat_template:
            why = _later_not_scored(len(turns), "the model has no chat template to place them")
        elif turns:
            placed, why = _place_later(loaded, prompts[j], prefixes[j], answers[j], turns, forbidden,
                                       image_id)
        room = None if bounds.context is None else max(bounds.context - int(lengths[j]), 0)
        tail = bound_tail(first[j], placed, bounds.max_answer_tokens, room)
        if why:
            tail = Tail(tail.segments, 1 + len(turns), tail.truncated, why)
        out.append(tail)
    return out


def _later_not_scored(n: int, why: str) -> str:
    return f"{n} later answer turn{'s' if n > 1 else ''} not scored: {why}"


def _place_later(loaded: Stage1Model, prompt: str, prefix: str, answer: str,
                 turns: tuple[tuple[str, str], ...], forbidden: set[int], image_id: int | None
                 ) -> tuple[list, str | None]:
    """(template text ids, answer ids) of each later turn, or ([], why not)."""
    family, proc = loaded.family, loaded.processor
    try:
        placed = later_turn_ids(proc.tokenizer, lambda m: family.render_messages(proc, m), prompt, prefix,
                                [answer] + [a for _, a in turns], [u for u, _ in turns], forbidden)
    except Exception as e:  # noqa: BLE001 - the checkpoint's template is untrusted code
        return [], _later_not_scored(len(turns), "the chat template failed on the conversation "
                                               f"({type(e).__name__}: {str(e).strip()[:120]})")
    if placed is None:
        return [], _later_not_scored(len(turns), "the chat template does not write the conversation turn by "
                                               "turn")
    if image_id is not None and any(image_id in glue for glue, _ in placed):
        return [], _later_not_scored(len(turns), "a later user turn holds the image token (one image per "
                                               "record)")
    return placed, None


def plan_shards(dataset: Dataset, config: Stage1Config) -> list[Sequence[Sample]]:
    """The analysable samples in processing order, cut into shards of whole batches.

    Similar prompt lengths share a batch, so little is padding. Every engine
    (one process, Ray) runs exactly these batches, so the features agree.
    """
    ok = sorted((s for s in dataset.samples if s.ok), key=lambda s: (len(s.prompt), s.index))
    shard_size = -(-config.shard_size // config.batch_size) * config.batch_size
    return list(_chunks(ok, shard_size))


def shard_features(loaded: Stage1Model, shard: Sequence[Sample], config: Stage1Config,
                   on_progress: Progress | None = None) -> list[SampleFeatures]:
    """Features of one shard, batch by batch (rows sorted by record index)."""
    return [row for chunk in _chunks(shard, config.batch_size)
            for row in _batch_features(loaded, chunk, config, on_progress)]


def skipped_rows(dataset: Dataset) -> dict[int, SampleFeatures]:
    """Rows of the records that are not analysed (no image, path outside the root, ...)."""
    return {s.index: SampleFeatures(s.index, s.id, "skipped", s.skip_reason, cause=s.skip_cause)
            for s in dataset.samples if not s.ok}


def extract_features(loaded: Stage1Model, dataset: Dataset, config: Stage1Config,
                     on_progress: Progress | None = None,
                     journal: Journal | None = None) -> list[SampleFeatures]:
    """Features for every record, input order; skipped and failed samples are rows too.

    With a `journal` (shards.py), each completed shard of samples is saved in
    its parts folder and reused by a later run with the same fingerprint, so
    an interrupted run resumes where it stopped.
    """
    out = skipped_rows(dataset)
    for n, shard in enumerate(plan_shards(dataset, config)):
        done = None if journal is None else journal.load(n, shard)
        if done is None:
            done = shard_features(loaded, shard, config, on_progress)
            if journal is not None:
                journal.save(n, done)
        out.update((r.index, r) for r in done)
    return [out[i] for i in sorted(out)]


def _batch_features(loaded: Stage1Model, chunk: Sequence[Sample], config: Stage1Config,
                    on_progress: Progress | None) -> list[SampleFeatures]:
    images, good, rows = [], [], []
    limit = prompt_limit(loaded, config)
    lengths = prompt_lengths(loaded.processor.tokenizer, [s.prompt for s in chunk])
    for s, n in zip(chunk, lengths):
        if isinstance(n, str):
            rows.append(SampleFeatures(s.index, s.id, "error", n, cause=Cause.PROMPT_UNTOKENISABLE))
            continue
        if limit is not None and n > limit:
            why = (f"prompt is {n:,} tokens, over the limit of {limit:,} (--max-prompt-tokens; default: the "
                   "model's context length)")
            rows.append(SampleFeatures(s.index, s.id, "skipped", why, cause=Cause.PROMPT_TOO_LONG))
            continue
        try:
            images.append(load_image(s, config.max_image_pixels))
            good.append(s)
        except ImageTooLarge as e:
            rows.append(SampleFeatures(s.index, s.id, "skipped", str(e), cause=Cause.IMAGE_TOO_LARGE))
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            rows.append(SampleFeatures(s.index, s.id, "error", f"cannot decode image: {e}",
                                       cause=Cause.IMAGE_UNDECODABLE))
    if good:
        for s, result in zip(good, _rows_or_errors(loaded, good, images, config)):
            rows.append(SampleFeatures(s.index, s.id, "error", result, cause=Cause.FORWARD_FAILED)
                        if isinstance(result, str) else _features(s, result, config))
    if on_progress:
        on_progress(len(chunk))
    return sorted(rows, key=lambda r: r.index)


def _rows_or_errors(loaded: Stage1Model, samples: list[Sample], images: list[Image.Image],
                    config: Stage1Config) -> list[Captured | str]:
    """Rows per sample; when the batch fails, each sample alone, so one bad
    sample becomes an error row (its message) instead of stopping the audit."""
    try:
        return sample_rows(loaded, images, [s.prompt for s in samples],
                           [s.answer for s in samples] if config.answers else None,
                           base=config.answers and config.base_pass and loaded_reference(loaded) is not None,
                           later=[s.later for s in samples],
                           bounds=AnswerBounds(config.max_answer_tokens, context_length(loaded)))
    except Exception as e:  # noqa: BLE001 - untrusted input: reported per sample
        if len(samples) == 1:
            return [f"forward pass failed: {type(e).__name__}: {str(e).strip()[:200]}"]
    return [_rows_or_errors(loaded, [s], [im], config)[0] for s, im in zip(samples, images)]


def loaded_reference(loaded: Stage1Model) -> str | None:
    """What the base pass runs on ("adapter disabled", a base folder), or None."""
    return getattr(loaded, "reference", None) if scores_answers(loaded) else None


def _features(s: Sample, cap: Captured, config: Stage1Config) -> SampleFeatures:
    t = cap.image_rows.shape[-1]
    if t < 2:
        return SampleFeatures(s.index, s.id, "error", f"{t} image tokens in the prompt; at least 2 are "
                              "needed", cause=Cause.TOO_FEW_IMAGE_TOKENS)
    h = image_attention_entropy(cap.image_rows, config.entropy_eps)
    heads = head_entropies(cap.image_rows, config.entropy_eps) if config.per_head else None
    a, b = cap.answer, cap.base_answer
    return SampleFeatures(s.index, s.id, "ok", None, t, tuple(h.tolist()),
                          tuple(normalised_entropy(h, t).tolist()),
                          mass_image=tuple(cap.mass[0].tolist()), mass_text=tuple(cap.mass[1].tolist()),
                          mass_rest=tuple(cap.mass[2].tolist()),
                          entropy_heads=() if heads is None else tuple(tuple(r) for r in heads.tolist()),
                          answer_tokens=None if a is None else a.n_tokens,
                          answer_nll=None if a is None else a.nll,
                          answer_first_nll=None if a is None else a.first_nll,
                          base_answer_nll=None if b is None else b.nll,
                          base_first_nll=None if b is None else b.first_nll,
                          answer_missing=cap.answer_missing,
                          later_tokens=tuple(None if x is None else x.n_tokens for x in cap.later),
                          later_nll=tuple(None if x is None else x.nll for x in cap.later),
                          base_later_nll=tuple(None if x is None else x.nll for x in cap.base_later),
                          later_missing=cap.later_missing,
                          answers_truncated=None if (cap.answer_missing or "").startswith("not scored")
                          else cap.truncated)


def _chunks(items: Sequence[Sample], n: int) -> Iterator[Sequence[Sample]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
