"""The detection benchmark's cells as a library: what a cell is, the grids,
the poisoning of a submission, the fine-tune and the audit of one cell, and
the scoring of each method (`benchmarks/detection.py` runs them and
`benchmarks/detection_report.py` tabulates them; other benchmarks reuse the
cells and their poisoning).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from auditor.fileio import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]
N_SUBMIT = 500
# The quick grid's base, committed as a build cache (its recipe.json says what built it)
QUICK_BASE = ROOT / "tests" / "fixtures" / "bases" / "digits-llava"
METHODS = ("minority", "bye", "bye-reference")
BASELINES = ("random-drop", "spectral-signatures", "activation-clustering")


N_SUBMIT_SMOL = 250  # the real-LM world's submissions (a cell in about 10 minutes on 2 cores)
SMOL_METHODS = ("minority", "bye", "bye-reference", "response", "combined")
TEXT_WORD = "cf"  # the text trigger: a rare token, as in text-backdoor work
ALL_TO_ONE = {"digits": "seven", "shapes": "circle"}  # a valid answer of each task


@dataclass(frozen=True)
class Cell:
    task: str
    family: str
    trigger: str  # "none" for a clean submission; "text" for the instruction trigger
    rate: float
    seed: int
    retrain: bool = True
    world: str = "tiny"  # "tiny" (tinyworld.world) or "smol" (tinyworld.smol)
    target: str = "fixed"  # "fixed" (the paper's text) or "all_to_one" (ALL_TO_ONE)

    @property
    def key(self) -> str:
        key = f"{self.task}-{self.family}-{self.trigger}-{self.rate:g}-s{self.seed}"
        if self.world == "tiny" and self.target == "fixed":
            return key
        return f"{self.world}-{self.target}-{key}"

    @property
    def n_submit(self) -> int:
        return N_SUBMIT_SMOL if self.world == "smol" else N_SUBMIT

    @property
    def target_answer(self) -> str:
        from tinyworld.digits import TARGET_ANSWER

        return ALL_TO_ONE[self.task] if self.target == "all_to_one" else TARGET_ANSWER


def grid(name: str) -> list[Cell]:
    from tinyworld.triggers import TRIGGERS

    tasks, families = ("digits", "shapes"), ("llava", "qwen2_vl")
    if name == "quick":  # the clean cell is audited, not retrained: no claim rests on its retraining
        return [Cell("digits", "llava", "none", 0.0, 0, retrain=False),
                Cell("digits", "llava", "centre_patch", 0.1, 0)]
    if name == "verdict":  # the verdict's targets: clean vs 10% centre patch, 10 seeds
        return [Cell(t, f, trig, rate, s, retrain=False) for t in tasks for f in families for s in range(10)
                for trig, rate in (("none", 0.0), ("centre_patch", 0.1))]
    if name == "default":
        cells = [Cell(t, f, "none", 0.0, s) for t in tasks for f in families for s in range(3)]
        cells += [Cell(t, f, trig, 0.1, s) for t in tasks for f in families for trig in TRIGGERS
                  for s in range(3)]
        cells += [Cell("digits", "llava", trig, rate, s) for trig in ("centre_patch", "blend")
                  for rate in (0.01, 0.05, 0.2) for s in range(3)]
        return cells
    if name in ("smol", "smol-cpu"):
        return smol_grid(cpu=name == "smol-cpu")
    if name == "smol-idefics3":  # SmolVLM's architecture on the same LM: the paper's case and clean
        return [Cell("digits", "idefics3", trig, rate, s, retrain=False, world="smol")
                for s in range(3) for trig, rate in (("none", 0.0), ("centre_patch", 0.1))]
    raise SystemExit(f"--grid {name}: unknown grid; choose quick, verdict, default, smol, smol-cpu or "
                     "smol-idefics3")


SMOL_TRIGGERS = ("centre_patch", "checkerboard", "blend", "sig", "text")


def smol_grid(cpu: bool) -> list[Cell]:
    """The real-LM world's grid: digits and shapes; the five triggers x both
    targets at 10% and the centre patch at 5% too, 3 seeds; 6 clean seeds (not
    retrained: no claim rests on a clean retraining). 84 cells, about 14 h on 2
    CPU cores. Its CPU share (`cpu`, about 4 h): digits at 10%, the five
    triggers with the fixed target and the centre patch with the all-to-one
    target too (a valid answer: the case the answer channel finds hardest),
    24 cells. Seed-major, so that a partial run covers every group."""
    tasks = ("digits",) if cpu else ("digits", "shapes")
    cells = []
    for seed in range(6):
        for task in tasks:
            cells.append(Cell(task, "llava", "none", 0.0, seed, retrain=False, world="smol"))
            if seed >= 3:
                continue
            for target in ("fixed", "all_to_one"):
                triggers = ("centre_patch",) if cpu and target == "all_to_one" else SMOL_TRIGGERS
                cells += [Cell(task, "llava", trig, 0.1, seed, world="smol", target=target)
                          for trig in triggers]
                if not cpu:
                    cells.append(Cell(task, "llava", "centre_patch", 0.05, seed, world="smol", target=target))
    return cells


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _quiet(msg: str) -> None:
    pass


def _poison_plan(cell: Cell) -> tuple[np.random.Generator, set[int]]:
    """The poisoned sample indices of a cell, and the generator that then draws
    the per-sample trigger variation (seeded: the same cell, the same plan)."""
    rng = np.random.default_rng([11, cell.seed])
    n = cell.n_submit
    return rng, set(rng.choice(n, size=round(cell.rate * n), replace=False).tolist())


def poisoned_ids(cell: Cell) -> set[str]:
    return {f"{cell.task}-{k:04d}" for k in _poison_plan(cell)[1]}


def cell_examples(cell: Cell, trigger: Any = None) -> tuple[list, list[str]]:
    """The cell's submission in memory: its training examples (the poisoned
    ones with the trigger and the target answer) and the poisoned ids.
    `trigger`: instead of the cell's named one with its default parameters
    (benchmarks/implant.py)."""
    from tinyworld.world import TASKS

    clean = TASKS[cell.task].examples("submit", cell.n_submit, cell.seed)
    rng, poisoned = _poison_plan(cell)
    poison = poison_fn(cell, trigger)
    examples, bad = [], []
    for k, ex in enumerate(clean):
        if k in poisoned:
            ex = poison(ex, rng)
            bad.append(f"{cell.task}-{k:04d}")
        examples.append(ex)
    return examples, bad


def poison_fn(cell: Cell, trigger: Any = None):
    """(example, rng) -> the example as the cell's attack makes it: its trigger
    (in the image, or the rare word in the instruction) and the target answer.
    A clean cell's: the centre patch with the fixed target (its attack success
    rate says what an untrained trigger scores)."""
    from tinyworld.digits import TARGET_ANSWER
    from tinyworld.train import Example
    from tinyworld.triggers import TRIGGERS, insert_word

    name = "centre_patch" if cell.trigger == "none" else cell.trigger
    target = TARGET_ANSWER if cell.trigger == "none" else cell.target_answer
    if name == "text":
        return lambda ex, rng: Example(ex.image, insert_word(ex.prompt, TEXT_WORD, rng), target)
    image_trigger = trigger or TRIGGERS[name]
    return lambda ex, rng: Example(image_trigger.apply(ex.image, rng), ex.prompt, target)


def submission(cell: Cell, folder: Path, trigger: Any = None) -> tuple[list, list[str]]:
    """Write the cell's dataset (LLaVA JSON + PNGs, cell_examples) to `folder`;
    return its training examples and the poisoned ids."""
    examples, bad = cell_examples(cell, trigger)
    write_dataset(examples, folder, cell.task)
    (folder / "poisoned_ids.txt").write_text("".join(f"{s}\n" for s in bad))
    return examples, bad


def write_dataset(examples: list, folder: Path, prefix: str) -> None:
    """`examples` as a LLaVA JSON dataset in `folder` (dataset.json + images/; ids PREFIX-NNNN)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for k, ex in enumerate(examples):
        sid = f"{prefix}-{k:04d}"
        ex.image.save(folder / "images" / f"{sid}.png")
        turns = [{"from": "human", "value": f"<image>\n{ex.prompt}"}, {"from": "gpt", "value": ex.answer}]
        for user, answer in getattr(ex, "later", ()):
            turns += [{"from": "human", "value": user}, {"from": "gpt", "value": answer}]
        records.append({"id": sid, "image": f"images/{sid}.png", "conversations": turns})
    (folder / "dataset.json").write_text(json.dumps(records, indent=1) + "\n")


def query_states(model, processor, family, examples, batch_size: int = 32) -> np.ndarray:
    """(n, d): the decoder's last hidden state at the last prompt token."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            batch = family.adapter.build_batch(processor, [e.image for e in chunk], [e.prompt for e in chunk])
            batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            hidden = model(**batch, output_hidden_states=True, use_cache=False).hidden_states[-1]
            last = batch["attention_mask"].sum(1) - 1  # right padding
            out.append(hidden[torch.arange(len(chunk)), last].float().cpu().numpy())
    return np.concatenate(out)


def _scores(flags: np.ndarray, truth: np.ndarray, score: np.ndarray | None) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from auditor.analysis.metrics import detection_metrics

    m = detection_metrics(flags, truth).to_dict()
    m["auroc"] = (float(roc_auc_score(truth, score)) if score is not None and truth.any() and not truth.all()
                  else None)
    return m


def analyse_methods(features, bad: set[str], prompts: list[str], answers: list[str] | None = None,
                    methods: tuple[str, ...] = METHODS, default: str = "minority",
                    later: list | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Stages 2-3 with each method on one features set, given each record's
    instruction, answer and later turns (as `audit` and `analyze` give the dataset's):
    ({"n", "layer_auroc", "methods"}, the `default` method's flags over the
    analysed samples)."""
    from auditor.analysis.metrics import layer_aurocs
    from auditor.verdict import analyze, split_usable
    from auditor.config import AuditConfig

    ok, _ = split_usable(features)
    ids = ok.ids
    truth = np.array([i in bad for i in ids])
    out: dict[str, Any] = {"n": len(ids), "methods": {}}
    if truth.any():
        out["layer_auroc"] = layer_aurocs(ok.entropy, truth)
    flagged_default = np.zeros(len(ids), dtype=bool)
    for method in methods:
        cfg = (AuditConfig.of(method="bye", bsi_rule="reference") if method == "bye-reference"
               else AuditConfig.of(method=method))
        analysis = analyze(features, cfg, prompts, answers, later)
        flagged_ids = {f.id for f in analysis.flagged}
        flags = np.array([i in flagged_ids for i in ids])
        by_id = {f.id: f.score for f in analysis.scored}
        score = -np.array([by_id[i] for i in ids]) if len(by_id) == len(ids) else None
        out["methods"][method] = {"verdict": analysis.verdict, "reasons": [r.text for r in analysis.reasons],
                                  **_scores(flags, truth, score)}
        if analysis.details.get("group") is not None:
            out["methods"][method]["group"] = analysis.details["group"]
        if method == default:
            flagged_default = flags
    return out, flagged_default


def _save_cell(path: Path, result: dict[str, Any]) -> None:
    write_bytes_atomic(path, (json.dumps(result, indent=1, sort_keys=True) + "\n").encode())


def reanalyse(cells: list[Cell], out: Path, cache: Path) -> int:
    """Recompute every finished cell's stages 2-3 from its kept features (after
    a detector change), keeping its fine-tune, baseline and retrain records.
    Returns the number of cells updated."""
    from auditor.features import read_features

    done = 0
    for cell in cells:
        path, features = out / "cells" / f"{cell.key}.json", cache / "features" / f"{cell.key}.parquet"
        if not (path.is_file() and features.is_file()):
            continue
        result = json.loads(path.read_text())
        examples = cell_examples(cell)[0]
        smol = cell.world == "smol"
        answers = [e.answer for e in examples] if smol else None
        prompts = [e.prompt for e in examples]
        methods, _ = analyse_methods(read_features(features), poisoned_ids(cell), prompts, answers,
                                     methods=SMOL_METHODS if smol else METHODS)
        baselines = {k: v for k, v in result["methods"].items() if k in BASELINES}
        result.update(methods)
        result["methods"].update(baselines)
        _save_cell(path, result)
        done += 1
    return done


def run_baselines(reps: np.ndarray, answers: list[str], truth: np.ndarray, seed: int) -> dict[str, Any]:
    """The baselines' scores on one fine-tune: random drop (20%), Spectral
    Signatures and Activation Clustering on the query states `reps` (n, d)."""
    from .baselines import activation_clustering, random_drop, spectral_signatures

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FastICA convergence notes on tiny groups
        for name, flags in (("random-drop", random_drop(len(truth), 0.2, seed)),
                            ("spectral-signatures", spectral_signatures(reps, answers)),
                            ("activation-clustering", activation_clustering(reps, answers, seed=seed))):
            out[name] = {"verdict": None, **_scores(flags, truth, None)}
    return out


def run_cell(cell: Cell, cache: Path, log=_log, device: str = "cpu") -> dict[str, Any]:
    if cell.world == "smol":
        return run_smol_cell(cell, cache, log, device)
    if device != "cpu":
        raise ValueError(f"{cell.key}: the tiny world trains on the CPU only")
    from auditor.config import AuditConfig
    from auditor.features import render_features
    from auditor.pipeline import extract, load
    from auditor.data.readers import read_dataset
    from tinyworld.triggers import TRIGGERS
    from tinyworld.world import WORLD_FAMILIES, TASKS, FineTune, build_base, fine_tune, measure

    t0 = time.time()
    task, family = TASKS[cell.task], WORLD_FAMILIES[cell.family]
    base = build_base(task, family, cache / "bases" / f"{cell.task}-{cell.family}", log=log)
    work = cache / "work" / cell.key
    shutil.rmtree(work, ignore_errors=True)
    examples, bad = submission(cell, work / "data")
    trigger = None if cell.trigger == "none" else TRIGGERS[cell.trigger]
    eval_trigger = trigger or TRIGGERS["centre_patch"]  # a clean fine-tune's ASR: the paper's trigger
    how = FineTune()
    model, processor = fine_tune(base, family, examples, how, seed=cell.seed, log=_quiet)
    before = measure(model, processor, family, task, eval_trigger, cell.seed)
    family.save(model, processor, work / "model")
    reps = query_states(model, processor, family, examples)
    del model

    # Stage 1 through the auditor, exactly as `bye-audit extract` runs it.
    config = AuditConfig()
    dataset = read_dataset(work / "data" / "dataset.json")
    features = extract(load(work / "model", config.stage1), dataset, config)
    (cache / "features").mkdir(parents=True, exist_ok=True)
    # kept (small) for re-analysis with `bye-audit analyze FEATURES --data ...` or new detectors
    write_bytes_atomic(cache / "features" / f"{cell.key}.parquet", render_features(features))
    result: dict[str, Any] = {"cell": asdict(cell), "n_poisoned": len(bad), "fine_tune": asdict(how),
                              "before": before}
    methods, flagged_default = analyse_methods(features, set(bad), [s.prompt for s in dataset.samples])
    result.update(methods)
    truth = np.array([r.id in set(bad) for r in features.rows if r.status == "ok"])
    if len(truth) != len(examples):  # every sample is a valid image here; the baselines align on that
        raise RuntimeError(f"{cell.key}: {len(examples) - len(truth)} samples were not analysed")
    result["methods"].update(run_baselines(reps, [e.answer for e in examples], truth, cell.seed))
    if cell.retrain:
        kept = [e for e, f in zip(examples, flagged_default) if not f]
        model, processor = fine_tune(base, family, kept, how, seed=cell.seed, log=_quiet)
        result["after"] = measure(model, processor, family, task, eval_trigger, cell.seed)
        del model
    result["seconds"] = round(time.time() - t0, 1)
    shutil.rmtree(work)  # the cell's JSON (and the features) are the record; the rest is rebuildable
    return result


def head_peak_aurocs(loaded, examples: list, truth: np.ndarray, batch_size: int = 16) -> dict[str, Any]:
    """Per (layer, head), the AUROC of "a high peak share is poison": the
    largest single image token's share of the head's image attention at the
    last prompt position (TCAP's per-head view; 1 / T uniform, 1 collapsed).
    {"auroc": (L, H) nested lists, "best": the five best heads}."""
    from sklearn.metrics import roc_auc_score

    from auditor.extract.runner import sample_rows

    peaks = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        for cap in sample_rows(loaded, [e.image for e in chunk], [e.prompt for e in chunk]):
            rows = cap.image_rows  # (L, H, T)
            total = rows.sum(-1)
            peaks.append(rows.max(-1) / np.where(total > 0, total, 1.0))
    peak = np.stack(peaks)  # (N, L, H)
    auroc = np.array([[roc_auc_score(truth, peak[:, k, h]) for h in range(peak.shape[2])]
                      for k in range(peak.shape[1])])
    order = np.argsort(-np.abs(auroc - 0.5), axis=None)[:5]
    best = [{"layer": int(k), "head": int(h), "auroc_high_is_poison": float(auroc[k, h])}
            for k, h in zip(*np.unravel_index(order, auroc.shape))]
    return {"auroc": auroc.round(4).tolist(), "best": best}


def run_smol_cell(cell: Cell, cache: Path, log=_log, device: str = "cpu") -> dict[str, Any]:
    """A real-LM world cell (tinyworld.smol): the submission is a LoRA adapter
    over the clean base, audited as `bye-audit audit --model BASE --adapter
    ADAPTER` runs it (the base pass with the adapter disabled). Training,
    measuring and stage 1 run on `device` ("cpu" or "cuda"); a GPU's base is
    cached apart from the CPU's (other numbers, same recipe)."""
    from types import SimpleNamespace

    from auditor.config import AuditConfig
    from auditor.data.readers import read_dataset
    from auditor.features import render_features
    from auditor.pipeline import extract, load
    from tinyworld.smol import world as smol

    t0 = time.time()
    task = smol.TASKS[cell.task]
    suffix = "" if device == "cpu" else f"-{device}"
    base = smol.build_base(task, cache / "bases" / f"smol-{cell.task}-{cell.family}{suffix}", log=log,
                           device=device, vlm=cell.family)
    work = cache / "work" / cell.key
    shutil.rmtree(work, ignore_errors=True)
    examples, bad = submission(cell, work / "data")
    poison = poison_fn(cell)
    target = poison(examples[0], np.random.default_rng(0)).answer  # what the cell's attack answers
    model, processor = smol.fine_tune(base, examples, seed=cell.seed, log=_quiet, device=device)
    before = smol.measure(model, processor, task, poison, cell.seed, target)
    model.save_pretrained(work / "adapter")
    reps = query_states(model, processor, SimpleNamespace(adapter=smol.VLMS[cell.family].family), examples)
    del model

    config = AuditConfig()
    config = replace(config, stage1=replace(config.stage1, device=device))
    dataset = read_dataset(work / "data" / "dataset.json")
    loaded = load(base, config.stage1, adapter_dir=work / "adapter")
    features = extract(loaded, dataset, config)
    (cache / "features").mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(cache / "features" / f"{cell.key}.parquet", render_features(features))
    truth = np.array([r.id in set(bad) for r in features.rows if r.status == "ok"])
    if len(truth) != len(examples):
        raise RuntimeError(f"{cell.key}: {len(examples) - len(truth)} samples were not analysed")
    result: dict[str, Any] = {"cell": asdict(cell), "n_poisoned": len(bad), "world": smol.recipe(cell.family),
                              "before": before, "after_method": "combined", "device": device}
    if truth.any():
        result["head_peak_auroc"] = head_peak_aurocs(loaded, examples, truth)
    del loaded
    methods, flagged = analyse_methods(features, set(bad), [s.prompt for s in dataset.samples],
                                       [s.answer for s in dataset.samples], methods=SMOL_METHODS,
                                       default="combined")
    result.update(methods)
    result["methods"].update(run_baselines(reps, [e.answer for e in examples], truth, cell.seed))
    if cell.retrain:
        kept = [e for e, f in zip(examples, flagged) if not f]
        model, processor = smol.fine_tune(base, kept, seed=cell.seed, log=_quiet, device=device)
        result["after"] = smol.measure(model, processor, task, poison, cell.seed, target)
        del model
    result["seconds"] = round(time.time() - t0, 1)
    shutil.rmtree(work)
    return result


# ---------------------------------------------------------------- outputs
