"""The detection benchmark's tables and plots (runs.csv, tables.md, PNGs) from finished cells."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from auditor.fileio import write_bytes_atomic

from .cells import BASELINES, METHODS


def _pyplot():
    """matplotlib's pyplot on the file-only backend (no display here or in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    """Laid out, written as a 120-dpi PNG, and closed (figures are not kept open)."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


COLUMNS = ("task", "family", "trigger", "rate", "seed", "method", "verdict", "flagged", "precision", "recall",
           "f1", "fpr", "auroc", "clean_acc_before", "asr_before", "clean_acc_after", "asr_after", "target")
ALL_METHODS = METHODS + ("response", "combined")


def rows(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        c = r["cell"]
        for method, m in r["methods"].items():
            after = r.get("after", {}) if method == r.get("after_method", "minority") else {}
            out.append({"task": c["task"], "family": c["family"], "trigger": c["trigger"], "rate": c["rate"],
                        "target": c.get("target", "fixed"),
                        "seed": c["seed"], "method": method, "verdict": m["verdict"],
                        "flagged": m["tp"] + m["fp"], "precision": m["precision"], "recall": m["recall"],
                        "f1": m["f1"], "fpr": m["fpr"], "auroc": m["auroc"],
                        "clean_acc_before": r["before"]["clean_accuracy"],
                        "asr_before": r["before"].get("attack_success_rate"),
                        "clean_acc_after": after.get("clean_accuracy"),
                        "asr_after": after.get("attack_success_rate")})
    return out


def _ms(values: list) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def verdict_summary(table_rows: list[dict]) -> str:
    """Markdown: per (task, family) and method, the verdicts on clean and on
    poisoned submissions, the flagged share of clean ones and the mean F1 on
    poisoned ones (the verdict's targets: docs/benchmarks.md)."""
    lines = ["| task | family | method | clean: pass / runs | clean: flagged (mean) | poisoned: fail / runs "
             "| "
             "poisoned: F1 (mean ± sd) |", "|---|---|---|---|---|---|---|"]
    for task, family in sorted({(r["task"], r["family"]) for r in table_rows}):
        for method in ALL_METHODS:
            rs = [r for r in table_rows if (r["task"], r["family"], r["method"]) == (task, family, method)]
            if not rs:
                continue
            clean, bad = [r for r in rs if r["rate"] == 0], [r for r in rs if r["rate"] > 0]
            lines.append(f"| {task} | {family} | {method} | {sum(r['verdict'] == 'pass' for r in clean)} / "
                         f"{len(clean)} | {np.mean([r['fpr'] for r in clean]) if clean else 0:.2%} | "
                         f"{sum(r['verdict'] == 'fail' for r in bad)} / {len(bad)} | "
                         f"{_ms([r['f1'] for r in bad])} |")
    return "\n".join(lines) + "\n"


def trigger_label(trigger: str, target: str) -> str:
    return trigger if target == "fixed" else f"{trigger} ({target})"


def tables(table_rows: list[dict]) -> str:
    """Markdown: per (task, family, trigger, rate, method), mean ± sd over seeds."""
    keys = sorted({(r["task"], r["family"], r["trigger"], r["rate"], r.get("target", "fixed"))
                   for r in table_rows})
    lines = ["| task | family | trigger | poison | method | seeds | verdicts | flagged | F1 | FPR | AUROC | "
             "clean acc before → after | ASR before → after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in keys:
        for method in ALL_METHODS + BASELINES:
            rs = [r for r in table_rows if (r["task"], r["family"], r["trigger"], r["rate"],
                                            r.get("target", "fixed")) == k and r["method"] == method]
            if not rs:
                continue
            verdicts = ", ".join(f"{v} {sum(r['verdict'] == v for r in rs)}"
                                 for v in ("pass", "fail", "inconclusive")
                                 if any(r["verdict"] == v for r in rs))
            lines.append(
                f"| {k[0]} | {k[1]} | {trigger_label(k[2], k[4])} | {k[3]:.0%} | {method} | {len(rs)} | "
                f"{verdicts or '-'} | "
                f"{np.mean([r['flagged'] for r in rs]):.1f} | {_ms([r['f1'] for r in rs])} | "
                f"{_ms([r['fpr'] for r in rs])} | {_ms([r['auroc'] for r in rs])} | "
                f"{_ms([r['clean_acc_before'] for r in rs])} → {_ms([r['clean_acc_after'] for r in rs])} | "
                f"{_ms([r['asr_before'] for r in rs])} → {_ms([r['asr_after'] for r in rs])} |")
    return "\n".join(lines) + "\n"


def plots(table_rows: list[dict], out: Path) -> None:
    plt = _pyplot()

    poisoned = [r for r in table_rows if r["rate"] > 0]
    triggers = sorted({r["trigger"] for r in poisoned})
    if not triggers:
        return
    fig, ax = plt.subplots(figsize=(8, 3.5))
    methods = [m for m in ALL_METHODS + BASELINES if any(r["method"] == m for r in poisoned)]
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        means = [np.mean([r["f1"] for r in poisoned if r["trigger"] == t and r["method"] == method] or [0])
                 for t in triggers]
        ax.bar(np.arange(len(triggers)) + j * width, means, width, label=method)
    ax.set_xticks(np.arange(len(triggers)) + 0.4 - width / 2, triggers, rotation=15)
    ax.set_ylabel("F1 (mean over cells)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=3)
    _save(plt, fig, out / "f1_by_trigger.png")
    minority = [r for r in poisoned if r["asr_after"] is not None]  # the cleaning method's rows
    if minority:
        fig, ax = plt.subplots(figsize=(6, 3))
        before = [np.mean([r["asr_before"] for r in minority if r["trigger"] == t] or [0]) for t in triggers]
        after = [np.mean([r["asr_after"] for r in minority if r["trigger"] == t] or [0]) for t in triggers]
        ax.bar(np.arange(len(triggers)) - 0.2, before, 0.4, label="before cleaning")
        ax.bar(np.arange(len(triggers)) + 0.2, after, 0.4,
               label=f"after cleaning ({minority[0]['method']})")
        ax.set_xticks(np.arange(len(triggers)), triggers, rotation=15)
        ax.set_ylabel("attack success rate")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        _save(plt, fig, out / "asr_before_after.png")


def attention_plots(results: list[dict], out: Path) -> None:
    """Where attention separates the poisoned samples, per trigger (the real-LM
    world's cells): layer_auroc.png, the AUROC of "low entropy is poison" per
    layer (one thin line per seed, the mean bold; above 0.5 the poisoned
    samples collapse, below 0.5 they spread), and head_peak_auroc.png, the
    peak-share AUROC per (layer, head), averaged over seeds."""
    poisoned = [r for r in results if "layer_auroc" in r and r["cell"]["rate"] > 0]
    if not poisoned:
        return
    plt = _pyplot()

    def label(r):
        c = r["cell"]
        return f"{trigger_label(c['trigger'], c.get('target', 'fixed'))} {c['rate']:.0%}"

    groups: dict[str, list[dict]] = {}
    for r in poisoned:
        groups.setdefault(label(r), []).append(r)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for k, (name, rs) in enumerate(sorted(groups.items())):
        curves = np.array([[a["auroc_low_is_poison"] for a in r["layer_auroc"]] for r in rs])
        colour = f"C{k % 10}"
        for curve in curves:
            ax.plot(curve, color=colour, lw=0.6, alpha=0.4)
        ax.plot(curves.mean(axis=0), color=colour, lw=2, label=f"{name} (n={len(rs)})")
    ax.axhline(0.5, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("AUROC, low entropy is poison")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=2)
    _save(plt, fig, out / "layer_auroc.png")
    heads = {name: [r["head_peak_auroc"]["auroc"] for r in rs if "auroc" in r.get("head_peak_auroc", {})]
             for name, rs in sorted(groups.items())}
    heads = {name: np.mean(np.array(maps, dtype=float), axis=0) for name, maps in heads.items() if maps}
    if not heads:
        return
    fig, axes = plt.subplots(1, len(heads), figsize=(2.2 * len(heads) + 1, 4), squeeze=False,
                             sharey=True)
    for ax, (name, grid_) in zip(axes[0], heads.items()):
        im = ax.imshow(grid_, vmin=0, vmax=1, cmap="coolwarm", aspect="auto", origin="lower")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("head")
    axes[0][0].set_ylabel("decoder layer")
    fig.colorbar(im, ax=axes[0].tolist(), label="peak-share AUROC (mean over seeds)")
    fig.savefig(out / "head_peak_auroc.png", dpi=120)
    plt.close(fig)


def attention_table(results: list[dict]) -> str:
    """Markdown, one line per poisoned cell: does attention separate the
    poisoned samples, where and in which direction (the best layer's AUROC
    each way, the best head's peak-share AUROC), what the attack did, and
    each method's verdict and F1."""
    methods = [m for m in ALL_METHODS if any(m in r["methods"] for r in results)]
    lines = ["| cell | ASR before → after | clean acc | best layer, low is poison | best layer, high is "
             "poison | best head peak share | " + " | ".join(methods) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(methods)]
    for r in results:
        if "layer_auroc" not in r:
            continue
        c, aur = r["cell"], r["layer_auroc"]
        low = max(aur, key=lambda a: a["auroc_low_is_poison"])
        high = max(aur, key=lambda a: a["auroc_high_is_poison"])
        head = ((r.get("head_peak_auroc") or {}).get("best") or [None])[0]
        after = r.get("after", {}).get("attack_success_rate")
        cells = [f"{r['methods'][m]['verdict']} {r['methods'][m]['f1']:.2f}" if m in r["methods"] else "-"
                 for m in methods]
        lines.append(
            f"| {trigger_label(c['trigger'], c.get('target', 'fixed'))} {c['rate']:.0%} s{c['seed']} | "
            f"{r['before'].get('attack_success_rate', 0):.2f} → {'-' if after is None else f'{after:.2f}'} | "
            f"{r['before']['clean_accuracy']:.2f} | L{low['layer']} {low['auroc_low_is_poison']:.2f} | "
            f"L{high['layer']} {high['auroc_high_is_poison']:.2f} | "
            + (f"L{head['layer']}.H{head['head']} {head['auroc_high_is_poison']:.2f}" if head else "-")
            + " | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(results: list[dict], out: Path) -> list[dict]:
    table_rows = rows(results)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, COLUMNS)
    w.writeheader()
    w.writerows(table_rows)
    write_bytes_atomic(out / "runs.csv", buf.getvalue().encode())
    text = "## Verdicts\n\n" + verdict_summary(table_rows) + "\n## Every cell group\n\n" + tables(table_rows)
    if any("head_peak_auroc" in r for r in results):  # the real-LM world's cells
        text += "\n## Attention, per poisoned cell\n\n" + attention_table(results)
    write_bytes_atomic(out / "tables.md", text.encode())
    plots(table_rows, out)
    attention_plots(results, out)
    return table_rows
