"""`bye-audit verify`: recompute every digest of a signed bundle and check the signature."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .bundle import ATTESTATION, MANIFEST
from .evidence.attestation import AttestationError, open_envelope
from .evidence.keys import load_public_key
from .evidence.manifest import versions_line
from .fileio import sha256_bytes, sha256_file



@dataclass(frozen=True)
class Verification:
    ok: bool
    problems: tuple[str, ...]  # one line each: what changed, is missing, or failed
    checked: int = 0  # subjects whose digest matched
    keyid: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)  # facts that do not fail it
    signed: str | None = None  # what the signature vouches for, in one line (verdict, counts, tool, time)
    environment: str | None = None  # the signed library versions that produced the audit, in one line


def _locate(name: str, out_dir: Path, roots: dict[str, str | None], overrides: dict[str, Path | None]
            ) -> Path | None:
    """The file a subject name refers to, or None when its root is unknown."""
    top, _, rest = name.partition("/")
    if top == "outputs":
        base: Path | None = out_dir
    elif overrides.get(top) is not None:
        base = overrides[top]
    else:
        base = Path(roots[top]) if roots.get(top) else None
    if base is None or not rest:
        return None
    path = (base / rest).resolve()
    # A tampered manifest cannot make us read outside the root it names.
    return path if path.is_relative_to(base.resolve()) else None


def verify_bundle(out_dir: Path, key_path: Path, overrides: dict[str, Path | None] | None = None,
                  outputs_only: bool = False) -> Verification:
    """Check `out_dir`'s attestation with the public key at `key_path`, then every
    digest it names; `overrides` relocates input roots ("model", "adapter",
    "dataset" (its folder), "images") that moved since the audit."""
    out_dir, overrides = Path(out_dir), overrides or {}
    key = load_public_key(key_path)
    att = out_dir / ATTESTATION
    if not att.is_file():
        return Verification(False, (f"{att}: missing; this bundle is unsigned (audit with --sign-key KEY to "
                                    "sign one)",))
    try:
        stmt = open_envelope(att.read_bytes(), key)
    except AttestationError as e:
        return Verification(False, (f"{att}: {e}",), keyid=key.keyid)
    try:
        subjects = {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]}
    except (KeyError, TypeError):  # signed, but not by bye-audit's writer
        return Verification(False, (f"{att}: the signed statement's subjects are malformed",),
                            keyid=key.keyid)
    problems, checked, notes = [], 0, []
    manifest_path = out_dir / MANIFEST
    manifest_ok = (manifest_path.is_file()
                   and sha256_bytes(manifest_path.read_bytes()) == subjects.get(f"outputs/{MANIFEST}"))
    roots = {}
    if manifest_ok:
        roots = json.loads(manifest_path.read_bytes()).get("roots") or {}
    unlocated = 0
    for name, digest in sorted(subjects.items()):
        if outputs_only and not name.startswith("outputs/"):
            continue
        path = _locate(name, out_dir, roots, overrides)
        if path is None and not manifest_ok:
            unlocated += 1  # one line below, not one per image
        elif path is None:
            problems.append(f"{name}: cannot be located (its root is unknown); pass its folder to verify")
        elif not path.is_file():
            problems.append(f"{name}: missing ({path})")
        elif sha256_file(path) != digest:
            problems.append(f"{name}: changed ({path}): SHA-256 differs from the signed digest")
        else:
            checked += 1
    if unlocated:
        problems.append(f"{unlocated} input file(s) not checked: where they are comes from {MANIFEST}, which "
                        "failed its check; pass --model, --adapter, --base, --data and --image-root")
    if outputs_only:
        notes.append("inputs (model, adapter, base, dataset, images) were not checked (--outputs-only)")
    signed_outputs = {n.partition("/")[2] for n in subjects if n.startswith("outputs/")}
    extra = sorted(p.name for p in out_dir.iterdir()
                   if p.is_file() and p.name != ATTESTATION and p.name not in signed_outputs)
    if extra:
        notes.append("not covered by the signature: " + ", ".join(extra))
    if not outputs_only:
        notes.extend(_unsigned_inputs(subjects, roots, overrides))
    return Verification(not problems, tuple(problems), checked, key.keyid, tuple(notes),
                        signed_summary(stmt.get("predicate")), signed_environment(stmt.get("predicate")))


def signed_environment(predicate: object) -> str | None:
    """The signed versions in one line: 'stage 1: torch 2.13.0+cpu; transformers
    5.24.0; ...; stages 2-3: the same' (None for a predicate without them)."""
    env = predicate.get("environment") if isinstance(predicate, dict) else None
    if not isinstance(env, dict):
        return None
    stage1 = env.get("stage1") if isinstance(env.get("stage1"), dict) else {}
    analysis = env.get("analysis") if isinstance(env.get("analysis"), dict) else {}
    first, second = versions_line(stage1.get("libraries")), versions_line(analysis.get("libraries"))
    python = stage1.get("python") or analysis.get("python")
    head = f"python {python}; " if isinstance(python, str) else ""
    if not first:
        return f"{head}stage 1 not recorded; stages 2-3: {second or 'not recorded'}"
    rest = "the same" if second == first else second or "not recorded"
    return f"{head}stage 1: {first}; stages 2-3: {rest}"


def signed_summary(predicate: object) -> str | None:
    """One line of the signed predicate: 'FAIL, 99 of 1,000 records flagged (1,000
    analysed); report 1a2b-...; bye-audit 0.1.0; signed 2026-11-30T10:00:00Z'."""
    if not isinstance(predicate, dict):
        return None
    counts = predicate.get("counts") if isinstance(predicate.get("counts"), dict) else {}
    tool = predicate.get("tool") if isinstance(predicate.get("tool"), dict) else {}
    parts = [str(predicate.get("verdict", "?")).upper()]
    if all(isinstance(counts.get(k), int) for k in ("flagged", "records", "analysed")):
        parts[0] += (f", {counts['flagged']:,} of {counts['records']:,} records flagged "
                     f"({counts['analysed']:,} analysed)")
    if predicate.get("report_id"):
        parts.append(f"report {predicate['report_id']}")
    if tool.get("version"):
        parts.append(f"{tool.get('name', 'bye-audit')} {tool['version']}")
    if predicate.get("audited_at"):
        parts.append(f"signed at the audit, {predicate['audited_at']}")
    signer = predicate.get("signer") if isinstance(predicate.get("signer"), dict) else {}
    if isinstance(signer.get("name"), str) and signer["name"].isprintable():
        parts.append(f"by {signer['name'][:200]} (the name keygen was given; the key is what the signature "
                     "proves)")
    return "; ".join(map(str, parts))


def _unsigned_inputs(subjects: dict[str, str], roots: dict[str, str | None],
                     overrides: dict[str, Path | None]) -> list[str]:
    """A note per input folder (model, adapter) holding files the signature does not
    name: every file of those folders was digested at audit time, so these were
    added since (the dataset's and images' folders may hold unrelated files)."""
    notes = []
    for top in ("model", "adapter", "base"):
        base = overrides.get(top) or (Path(roots[top]) if roots.get(top) else None)
        if base is None or not Path(base).is_dir():
            continue
        names = (f"{top}/{p.relative_to(base).as_posix()}" for p in Path(base).rglob("*") if p.is_file())
        added = sorted(name for name in names if name not in subjects)
        if added:
            notes.append(f"{len(added)} file(s) in the {top} folder not covered by the signature "
                         f"(added after the audit): " + ", ".join(added[:10]) + (", ..."
                                                                                 if len(added) > 10 else ""))
    return notes
