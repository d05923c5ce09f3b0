"""Killing stage 1 and running the same command again gives the same features file."""

import signal
import subprocess
import sys
import time
from pathlib import Path

from tinyworld.fixtures import write_digits_dataset

BIN = Path(sys.executable).parent / "bye-audit"


def _extract(model, data, out):
    return [str(BIN), "extract", "--model", str(model), "--data", str(data), "--out", str(out),
            "--no-progress", "--batch-size", "1", "--shard-size", "2"]


def test_killed_extraction_resumes_to_the_identical_file(tiny_model, tmp_path):
    data, _ = write_digits_dataset(tmp_path / "data", n=60)
    out = tmp_path / "features.parquet"
    parts = Path(str(out) + ".parts")
    proc = subprocess.Popen(_extract(tiny_model, data, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while (len(list(parts.glob("shard-*.parquet"))) < 3 and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("shard-*.parquet")))
    assert 3 <= done_before < 30 and not out.exists(), "the run was not interrupted mid-way"

    res = subprocess.run(_extract(tiny_model, data, out), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert not parts.exists()  # cleaned up once the file is written
    reference = tmp_path / "uninterrupted.parquet"
    res = subprocess.run(_extract(tiny_model, data, reference), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == reference.read_bytes()
