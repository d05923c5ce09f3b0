"""--engine ray on a local Ray cluster: the single-process features (same rows,
order and values), a killed worker retried by Ray, a killed driver resumed by
rerunning the command into the same file."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.config import Stage1Config
from auditor.data import read_dataset
from auditor.errors import AuditInputError
from auditor.extract import ray_engine
from auditor.features import read_features
from auditor.extract.ray_engine import extract_features_ray
from auditor.extract.shards import Journal

STAGE1 = ["--batch-size", "4", "--shard-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def dataset(tiny_data, tmp_path_factory):
    """The 60 digit records plus one with a missing image and one undecodable image."""
    src = tiny_data[0]
    folder = tmp_path_factory.mktemp("raydata")
    shutil.copytree(src.parent / "images", folder / "images")
    records = json.loads(src.read_text())
    (folder / "images" / "broken.png").write_bytes(b"not a png")
    convo = records[0]["conversations"]
    records.insert(5, {"id": "missing", "image": "images/nope.png", "conversations": convo})
    records.insert(9, {"id": "broken", "image": "images/broken.png", "conversations": convo})
    path = folder / "dataset.json"
    path.write_text(json.dumps(records))
    return path


def _extract(model, data, out, *extra):
    res = CliRunner().invoke(cli, ["extract", "--model", str(model), "--data", str(data), "--out", str(out),
                                   *STAGE1, *extra])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def local_file(tiny_model, dataset, tmp_path_factory):
    return _extract(tiny_model, dataset, tmp_path_factory.mktemp("local") / "f.parquet")


@pytest.fixture(scope="module")
def ray_file(tiny_model, dataset, tmp_path_factory):
    return _extract(tiny_model, dataset, tmp_path_factory.mktemp("ray") / "f.parquet", "--engine", "ray",
                    "--workers", "2")


def _assert_same_rows(a, b):
    assert [(r.index, r.id, r.status, r.reason) for r in a] == [(r.index, r.id, r.status, r.reason)
                                                                for r in b]
    for x, y in zip(a, b):
        if x.status == "ok":
            np.testing.assert_allclose(y.entropy, x.entropy, atol=1e-6)
            np.testing.assert_allclose(y.mass_image, x.mass_image, atol=1e-6)
            assert (y.answer_tokens, y.answer_missing) == (x.answer_tokens, x.answer_missing)
            assert y.answer_nll == pytest.approx(x.answer_nll, abs=1e-6)  # the answer channel too


def test_ray_gives_the_single_process_features(local_file, ray_file):
    local, ray = read_features(local_file), read_features(ray_file)
    _assert_same_rows(local.rows, ray.rows)
    statuses = {r.id: r.status for r in ray.rows}
    assert statuses["missing"] == "skipped" and statuses["broken"] == "error"
    assert ray.meta["config"]["engine"] == "ray" and ray.meta["config"]["workers"] == 2
    assert ray.meta["environment"]["engine"] == {"name": "ray", "address": "local"}
    assert not Path(str(ray_file) + ".parts").exists()


def _worker_pids():
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"ShardWorker" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def test_a_killed_worker_is_retried_without_losing_or_duplicating_rows(tiny_model, dataset, local_file,
                                                                       tmp_path):
    import ray

    from auditor.extract.backend import load

    config = Stage1Config(batch_size=4, shard_size=4, engine="ray", workers=2)
    data = read_dataset(dataset)
    killed = []

    def kill_one_worker(n):
        if not killed:  # the first shard is back: the pool is busy with the rest
            pids = _worker_pids()
            assert pids, "no ShardWorker process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    load(tiny_model, config)  # inputs are valid; the workers load the model themselves
    load_args = {"model_dir": str(tiny_model), "adapter_dir": None, "onnx_path": None,
                 "stage1": asdict(config)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        rows = extract_features_ray(data, config, load_args, Journal(tmp_path / "parts", "run"),
                                    on_progress=kill_one_worker)
    finally:
        ray.shutdown()
    assert killed
    _assert_same_rows(read_features(local_file).rows, rows)


def test_a_killed_driver_resumes_into_the_same_file(tiny_model, dataset, ray_file, tmp_path):
    out = tmp_path / "f.parquet"
    parts = Path(str(out) + ".parts")
    cmd = [sys.executable, "-m", "auditor.cli", "extract", "--model", str(tiny_model), "--data", str(dataset),
           "--out", str(out), *STAGE1, "--engine", "ray", "--workers", "2"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not list(parts.glob("shard-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local cluster it started
    proc.wait()
    kept = list(parts.glob("shard-*.parquet"))
    assert kept and not out.exists(), "the driver finished before it could be killed"
    assert len(kept) < 15  # 60 analysable samples in shards of 4: it stopped part-way
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == ray_file.read_bytes()


def test_without_ray_installed_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(AuditInputError, match=r"pip install 'bye-audit\[ray\]'"):
        ray_engine.import_ray()


def test_ray_workers_run_the_onnx_backend_too(tiny_model, onnx_llava, dataset, local_file, tmp_path):
    out = _extract(tiny_model, dataset, tmp_path / "f.parquet", "--engine", "ray", "--backend", "onnx",
                   "--onnx", str(onnx_llava))
    features = read_features(out)
    assert features.meta["environment"]["backend"]["name"] == "onnx"
    local = read_features(local_file).rows
    assert [(r.id, r.status) for r in features.rows] == [(r.id, r.status) for r in local]
    for x, y in zip(local, features.rows):
        if x.status == "ok":
            np.testing.assert_allclose(y.entropy, x.entropy, atol=1e-4)


def test_ray_options_without_engine_ray_are_refused(tiny_model, dataset, tmp_path):
    for extra in (["--workers", "2"], ["--address", "auto"], ["--gpus-per-worker", "1"]):
        res = CliRunner().invoke(cli, ["extract", "--model", str(tiny_model), "--data", str(dataset), "--out",
                                       str(tmp_path / "f.parquet"), "--no-progress", *extra])
        assert res.exit_code == 2 and "only used with --engine ray" in res.output, res.output
        assert extra[0] in res.output and not (tmp_path / "f.parquet").exists()
