"""Output parity across a refactor: produce audit bundles, then compare two folders of them.

    python -m benchmarks.output_parity produce OUT [--cache benchmarks/cache/detection] [--cells K ...]
    python -m benchmarks.output_parity compare BEFORE AFTER

`produce` writes, under OUT, the bundled example's full audit (`example/`) and
`bye-audit analyze` of the kept stage-1 features of benchmark cells with both
methods (`CELL-minority/`, `CELL-bye/`; the cell's dataset is rebuilt from its
seed). SOURCE_DATE_EPOCH is fixed, so two runs of the same code give the same
bytes. `compare` lists every file that differs between two such folders and,
for JSON files, the keys whose values differ; it exits 0 when all are
identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CELLS = ("digits-llava-centre_patch-0.1-s0", "digits-llava-centre_patch-0.1-s1",
                 "digits-qwen2_vl-centre_patch-0.1-s0", "shapes-llava-centre_patch-0.1-s0",
                 "shapes-qwen2_vl-centre_patch-0.1-s0", "shapes-qwen2_vl-centre_patch-0.1-s1")
ROOT_NOTE = ".tree"
EPOCH = "1767225600"  # 2026-01-01T00:00:00Z: the audit time every produced bundle records


def _cell(key: str):
    from benchmarks.cells import Cell

    task, family, trigger, rate, seed = key.split("-")
    return Cell(task, family, trigger, float(rate), int(seed.lstrip("s")))


def _run(args: list[str], cwd: Path) -> int:
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    proc = subprocess.run([sys.executable, "-m", "auditor.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if proc.returncode not in (0, 1, 3):
        raise SystemExit(f"bye-audit {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
    return proc.returncode


def produce(out: Path, cache: Path, cells: list[str], example: bool = True) -> None:
    from benchmarks.cells import submission

    out.mkdir(parents=True, exist_ok=True)
    # Outputs name the tree and the folder they ran in; compare maps one run's onto the other's.
    (out / ROOT_NOTE).write_text(json.dumps([str(ROOT), str(out.resolve())]))
    if example:
        ex = ROOT / "examples" / "digits-badnets"
        code = _run(["audit", "--model", str(ex / "model"), "--data", str(ex / "dataset.json"),
                     "--out", str(out / "example"), "--no-progress", "--overwrite"], ROOT)
        print(f"example: exit {code}", file=sys.stderr)
    for key in cells:
        features = cache / "features" / f"{key}.parquet"
        if not features.is_file():
            raise SystemExit(f"{features}: no kept features for cell {key}")
        data = out / "data" / key
        if not (data / "dataset.json").is_file():
            submission(_cell(key), data)
        for method in ("minority", "bye"):
            code = _run(["analyze", str(features), "--data", str(data / "dataset.json"),
                         "--out", str(out / f"{key}-{method}"), "--method", method, "--overwrite"], ROOT)
            print(f"{key} {method}: exit {code}", file=sys.stderr)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def json_differences(a: bytes, b: bytes, limit: int = 12, keys_only: bool = False) -> list[str]:
    """The keys whose values differ between two JSON documents (flattened paths)."""
    fa, fb = _flat(json.loads(a)), _flat(json.loads(b))
    keys = sorted(set(fa) | set(fb))
    diff = [k for k in keys if fa.get(k, "<absent>") != fb.get(k, "<absent>")]
    if keys_only:
        return diff
    return [f"{k}: {str(fa.get(k, '<absent>'))[:90]!s} -> {str(fb.get(k, '<absent>'))[:90]!s}"
            for k in diff[:limit]] + ([f"... and {len(diff) - limit} more keys"] if len(diff) > limit else [])


def _same_table(a: Path, b: Path, pairs: list[tuple[bytes, bytes]]) -> bool:
    """Two Parquet files with equal rows and equal metadata once the paths are mapped
    (a path's length moves every offset in the file)."""
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a), pq.read_table(b)
    meta = [t.schema.metadata or {} for t in (ta, tb)]
    mapped = dict(meta[0])
    for x, y in pairs:
        mapped = {k: v.replace(x, y) for k, v in mapped.items()}
    return ta.replace_schema_metadata(None).equals(tb.replace_schema_metadata(None)) and mapped == meta[1]


def _same_results(before: Path, after: Path, files: list[Path]) -> dict[str, bool]:
    """Per bundle, whether what the audit decided is the same: analysis.json's
    verdict, reasons (schema 1's strings against schema 2's texts), flags,
    scores, BSI profile, score mixture and the minority group's measurements
    (schema 1 named its evidence layers `sensitive_layers`)."""
    out = {}
    for rel in files:
        if rel.name != "analysis.json" or not (before / rel).is_file() or not (after / rel).is_file():
            continue
        old, new = json.loads((before / rel).read_text()), json.loads((after / rel).read_text())
        texts = [r["text"] if isinstance(r, dict) else r for r in new["reasons"]]
        olds = [r["text"] if isinstance(r, dict) else r for r in old["reasons"]]
        keys = ("verdict", "flagged", "scores", "layers", "score_mixture", "counts")
        ok = olds == texts and all(old.get(k) == new.get(k) for k in keys)
        if old.get("group") is not None:
            ok = ok and all(old.get(k) == new.get(k) for k in ("group", "further_groups", "layer_contrast"))
        if "evidence_layers" in old:  # both schema 2
            ok = ok and all(old[k] == new.get(k) for k in ("evidence_layers", "sensitive_layers"))
        else:
            ok = ok and old["sensitive_layers"] == new.get("evidence_layers", new["sensitive_layers"])
        out[str(rel.parent)] = ok
    return out


def _pattern(key: str) -> str:
    return re.sub(r"\[\d+\]", "[]", key)


def compare(before: Path, after: Path) -> int:
    """Every file of both folders; the path of the tree `before` ran in is read
    as the one `after` ran in (two checkouts of the same repository)."""
    notes = [json.loads((d / ROOT_NOTE).read_text()) if (d / ROOT_NOTE).is_file() else []
             for d in (before, after)]
    pairs = [(x.encode(), y.encode()) for x, y in zip(*notes)]
    files = sorted({p.relative_to(before) for p in before.rglob("*") if p.is_file()}
                   | {p.relative_to(after) for p in after.rglob("*") if p.is_file()})
    files = [f for f in files if f.name != ROOT_NOTE]
    same = differ = 0
    changed: dict[tuple[str, str], int] = {}  # (file name, key pattern) -> in how many bundles
    for rel in files:
        a, b = before / rel, after / rel
        if not a.is_file() or not b.is_file():
            print(f"ONLY IN {'AFTER' if b.is_file() else 'BEFORE'}: {rel}")
            differ += 1
            continue
        da, db = a.read_bytes(), b.read_bytes()
        for x, y in pairs:
            da = da.replace(x, y)
        if da == db or (rel.suffix == ".parquet" and _same_table(a, b, pairs)):
            same += 1
            continue
        differ += 1
        print(f"DIFFERS: {rel}")
        if rel.suffix in (".json", ".sarif"):
            for line in json_differences(da, db):
                print(f"    {line}")
            for key in {_pattern(k) for k in json_differences(da, db, limit=10**9, keys_only=True)}:
                changed[(rel.name, key)] = changed.get((rel.name, key), 0) + 1
    print(f"{same} identical, {differ} different of {len(files)} files")
    kept = _same_results(before, after, files)
    print(f"\nresults unchanged (verdict, reason sentences, flags, scores, layer profile, score mixture, the "
          f"group's measurements): {sum(kept.values())} of {len(kept)} bundles")
    for name, ok in kept.items():
        if not ok:
            print(f"  RESULT CHANGED: {name}")
    if changed:
        print("\nJSON keys that differ, by file name (in how many bundles):")
        for (name, key), n in sorted(changed.items()):
            print(f"  {name}: {key} ({n})")
    return 0 if differ == 0 else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("out", type=Path)
    p.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "cache" / "detection")
    p.add_argument("--cells", nargs="*", default=list(DEFAULT_CELLS))
    p.add_argument("--no-example", action="store_true")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = ap.parse_args()
    if args.cmd == "produce":
        produce(args.out, args.cache, args.cells, not args.no_example)
    else:
        sys.exit(compare(args.before, args.after))


if __name__ == "__main__":
    main()
