"""A signed audit of the tiny model, then every way of changing it."""

import base64
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import cli

OUTPUTS = ["features.parquet", "analysis.json", "flagged.jsonl", "unanalysed.jsonl", "cleaned.json",
           "report.html", "report.pdf", "findings.sarif", "summary.json", "manifest.json"]


@pytest.fixture(scope="module")
def bundle(tiny_model, tiny_data, tmp_path_factory):
    """(work folder, out, key folder): copies of the model and data, so that
    the tests may damage them."""
    work = tmp_path_factory.mktemp("signed")
    shutil.copytree(tiny_model, work / "model")
    shutil.copytree(tiny_data[0].parent, work / "data")
    keys = work / "keys"
    assert CliRunner().invoke(cli, ["keygen", "--out", str(keys)]).exit_code == 0
    out = work / "out"
    res = CliRunner().invoke(cli,
                             ["audit", "--model", str(work / "model"), "--data",
                              str(work / "data" / "dataset.json"),
                                   "--out", str(out), "--no-progress", "--attention-only", "--sign-key",
                                   str(keys / "bye-audit.key")])
    assert res.exit_code in (0, 1), res.output
    assert (out / "attestation.dsse.json").is_file()
    return work, out, keys


def _verify(out, keys, *extra):
    return CliRunner().invoke(cli, ["verify", str(out), "--key", str(keys / "bye-audit.pub"), *extra])


@contextmanager
def _flipped(path: Path):
    """Within the block, `path` has one bit flipped in its middle (an empty file
    gets a byte); restored afterwards."""
    data = path.read_bytes()
    i = len(data) // 2
    path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:] if data else b"\n")
    try:
        yield
    finally:
        path.write_bytes(data)


def test_an_untouched_bundle_verifies(bundle):
    work, out, keys = bundle
    res = _verify(out, keys)
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"{len(manifest['files']) + 1} digests match" in res.output  # + the manifest itself


def test_verify_prints_the_signed_library_versions_that_produced_the_audit(bundle):
    from importlib.metadata import version

    work, out, keys = bundle
    statement = json.loads((out / "attestation.dsse.json").read_text())
    predicate = json.loads(base64.b64decode(statement["payload"]))["predicate"]
    libraries = predicate["environment"]["stage1"]["libraries"]
    # the installed distributions' versions (a CUDA build's torch.__version__ adds "+cu130")
    assert libraries["torch"] == version("torch") and libraries["tokenizers"] == version("tokenizers")
    line = next(x for x in _verify(out, keys).output.splitlines() if x.startswith("signed environment: "))
    assert f"stage 1: torch {version('torch')}; transformers {version('transformers')}; " in line
    assert f"tokenizers {version('tokenizers')}" in line and line.endswith("stages 2-3: the same")


def test_the_signed_environment_names_a_stage_that_differs_or_is_missing():
    from auditor.verify import signed_environment

    stage1 = {"python": "3.11.7", "libraries": {"torch": "2.13.0", "onnx": None, "numpy": "2.4.6"}}
    analysis = {"python": "3.11.7", "libraries": {"torch": "2.13.0", "onnx": None, "numpy": "2.4.5"}}
    assert signed_environment({"environment": {"stage1": stage1, "analysis": analysis}}) == (
        "python 3.11.7; stage 1: torch 2.13.0; numpy 2.4.6; stages 2-3: torch 2.13.0; numpy 2.4.5")
    assert signed_environment({"environment": {"stage1": None, "analysis": analysis}}) == (
        "python 3.11.7; stage 1 not recorded; stages 2-3: torch 2.13.0; numpy 2.4.5")
    assert signed_environment({"verdict": "pass"}) is None and signed_environment("x") is None


def test_the_manifest_covers_model_dataset_every_image_and_every_output(bundle):
    work, out, _ = bundle
    files = json.loads((out / "manifest.json").read_text())["files"]
    records = json.loads((work / "data" / "dataset.json").read_text())
    assert {f"images/{r['image']}" for r in records} <= set(files)
    assert {f"model/{p.relative_to(work / 'model').as_posix()}" for p in (work / "model").rglob("*")
            if p.is_file()} <= set(files)
    assert "dataset/dataset.json" in files
    assert {f"outputs/{n}" for n in OUTPUTS if n != "manifest.json"} <= set(files)


@pytest.mark.parametrize("name", OUTPUTS)
def test_flipping_one_byte_of_an_output_fails_and_names_it(bundle, name):
    work, out, keys = bundle
    with _flipped(out / name):
        res = _verify(out, keys)
    assert res.exit_code == 1
    assert f"outputs/{name}: changed" in res.output


@pytest.mark.parametrize("rel", ["an image", "data/dataset.json", "model/model.safetensors"])
def test_flipping_one_byte_of_an_input_fails_and_names_it(bundle, rel):
    work, out, keys = bundle
    path = sorted((work / "data").rglob("*.png"))[3] if rel == "an image" else work / rel
    with _flipped(path):
        res = _verify(out, keys)
        outputs_only = _verify(out, keys, "--outputs-only")
    assert res.exit_code == 1 and "changed" in res.output and path.name in res.output
    assert outputs_only.exit_code == 0 and "not checked" in outputs_only.output


def test_a_changed_attestation_or_a_wrong_key_fails(bundle, tmp_path):
    work, out, keys = bundle
    other = tmp_path / "other"
    assert CliRunner().invoke(cli, ["keygen", "--out", str(other)]).exit_code == 0
    res = CliRunner().invoke(cli, ["verify", str(out), "--key", str(other / "bye-audit.pub")])
    assert res.exit_code == 1 and "does not verify" in res.output
    with _flipped(out / "attestation.dsse.json"):
        res = _verify(out, keys)
    assert res.exit_code == 1 and "attestation.dsse.json" in res.output


def test_moved_inputs_verify_when_their_new_place_is_given(bundle, tmp_path):
    work, out, keys = bundle
    shutil.copytree(work / "model", tmp_path / "m2")
    shutil.copytree(work / "data", tmp_path / "d2")
    shutil.copytree(out, tmp_path / "o2")
    res = _verify(tmp_path / "o2", keys, "--model", str(tmp_path / "m2"), "--data",
                  str(tmp_path / "d2" / "dataset.json"),
                  "--image-root", str(tmp_path / "d2"))
    assert res.exit_code == 0, res.output


def test_an_added_file_is_noted_but_does_not_fail(bundle):
    work, out, keys = bundle
    extra = out / "notes.txt"
    extra.write_text("reviewer notes")
    try:
        res = _verify(out, keys)
    finally:
        extra.unlink()
    assert res.exit_code == 0 and "not covered by the signature: notes.txt" in res.output


def test_an_unsigned_bundle_says_so(tiny_model, tiny_data, tmp_path, bundle):
    _, _, keys = bundle
    out = tmp_path / "unsigned"
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]),
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code in (0, 1, 3)
    assert (out / "manifest.json").is_file() and not (out / "attestation.dsse.json").exists()
    assert "Not signed" in (out / "report.html").read_text()
    res = _verify(out, keys)
    assert res.exit_code == 1 and "unsigned" in res.output


def test_a_bad_sign_key_stops_the_audit_before_stage_1(tiny_model, tiny_data, tmp_path):
    bad = tmp_path / "k.pem"
    bad.write_text("not a key")
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]),
                                   "--out", str(tmp_path / "o"), "--no-progress", "--sign-key", str(bad)])
    assert res.exit_code == 2 and str(bad) in res.output and not (tmp_path / "o").exists()


def test_a_manifest_cannot_point_verify_outside_a_root(tmp_path):
    from auditor.verify import _locate

    assert _locate("model/../../etc/passwd", tmp_path, {"model": str(tmp_path / "m")}, {}) is None
    assert _locate("outputs/report.html", tmp_path, {}, {}) == (tmp_path / "report.html").resolve()


def test_a_changed_manifest_is_named_once_and_inputs_are_not_listed_one_by_one(bundle):
    work, out, keys = bundle
    with _flipped(out / "manifest.json"):
        res = _verify(out, keys)
    assert res.exit_code == 1 and "outputs/manifest.json: changed" in res.output
    assert "input file(s) not checked" in res.output
    assert res.output.count("FAILED") == 2


@pytest.mark.parametrize("attestation", [b"[" * 100_000 + b"]" * 100_000,
                                         b'{"payload": 5, "payloadType": "x", "signatures": []}'])
def test_a_malformed_attestation_fails_in_one_line(bundle, tmp_path, attestation):
    """A malformed attestation (nesting 100,000 deep, "payload": 5) fails in one line."""
    work, out, keys = bundle
    copy = tmp_path / "o"
    shutil.copytree(out, copy)
    (copy / "attestation.dsse.json").write_bytes(attestation)
    res = _verify(copy, keys)
    assert res.exit_code == 1 and "not a DSSE envelope" in res.stderr, res.output
    # the problem, then NOT verified
    assert "Traceback" not in res.output and len(res.stderr.splitlines()) == 2


def test_a_file_added_to_the_model_folder_after_the_audit_is_noted(bundle):
    """A file added to the audited model folder after the audit is noted by verify."""
    work, out, keys = bundle
    added = work / "model" / "chat_template_override.jinja"
    added.write_text("{{ 'x' }}")
    try:
        res = _verify(out, keys)
    finally:
        added.unlink()
    assert res.exit_code == 0, res.output
    assert ("note: 1 file(s) in the model folder not covered by the signature (added after the audit): "
            "model/chat_template_override.jinja") in res.output
    assert "model folder" not in _verify(out, keys).output


def test_the_signed_result_reads_as_one_line_and_tolerates_a_foreign_predicate():
    from auditor.verify import signed_summary

    line = signed_summary({"verdict": "fail", "counts": {"flagged": 99, "records": 1000, "analysed": 1000},
                           "report_id": "aaaa-bbbb-cccc-dddd", "audited_at": "2026-11-30T10:00:00Z",
                           "tool": {"name": "bye-audit", "version": "0.1.0"}})
    assert line == ("FAIL, 99 of 1,000 records flagged (1,000 analysed); report aaaa-bbbb-cccc-dddd; "
                    "bye-audit 0.1.0; signed at the audit, 2026-11-30T10:00:00Z")
    assert signed_summary({"verdict": "pass", "counts": "nonsense"}) == "PASS"
    assert signed_summary(None) is None


def test_the_signer_named_at_keygen_is_in_the_attestation_the_report_and_verify(tiny_model, tiny_data,
                                                                               tmp_path):
    keys = tmp_path / "keys"
    ada = "Ada Lovelace <ada@example.org>"
    res = CliRunner().invoke(cli, ["keygen", "--out", str(keys), "--signer", ada])
    assert res.exit_code == 0 and "signer Ada Lovelace <ada@example.org>" in res.output
    assert (keys / "bye-audit.signer").read_text() == "Ada Lovelace <ada@example.org>\n"
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]), "--out",
                                   str(out), "--no-progress", "--sign-key", str(keys / "bye-audit.key")])
    assert res.exit_code in (0, 1, 3), res.output
    predicate = json.loads(base64.b64decode(json.loads((out / "attestation.dsse.json").read_text())["payload"]
                                            ))["predicate"]
    assert predicate["signer"]["name"] == "Ada Lovelace <ada@example.org>"
    report = (out / "report.html").read_text()
    assert "signed by Ada Lovelace &lt;ada@example.org&gt; with the Ed25519 key" in report
    assert "by Ada Lovelace <ada@example.org> (the name keygen was given" in _verify(out, keys).output
    bad = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path / "k2"), "--signer", "two\nlines"])
    assert bad.exit_code == 2 and "one line of at most 200 printable characters" in bad.output


def test_absolute_image_paths_are_refused_unless_accepted_and_then_recorded_and_verified(tiny_model,
                                                                                        tiny_data, tmp_path):
    """Absolute image paths are refused with the fix named (--absolute-images); accepted,
    they are read as they are and recorded, so a third party's delivery need not
    be rewritten (which would change the digest of what is audited)."""
    data, _ = tiny_data
    recs = json.loads(data.read_text())
    for r in recs:
        r["image"] = str((data.parent / r["image"]).resolve())
    delivered = tmp_path / "delivery" / "train.json"
    delivered.parent.mkdir()
    delivered.write_text(json.dumps(recs))
    keys = tmp_path / "keys"
    assert CliRunner().invoke(cli, ["keygen", "--out", str(keys)]).exit_code == 0
    args = ["audit", "--model", str(tiny_model), "--data", str(delivered), "--no-progress",
            "--sign-key", str(keys / "bye-audit.key")]
    refused = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "refused")])
    assert refused.exit_code == 2 and "--absolute-images" in refused.output  # the fix names the option
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, args + ["--out", str(out), "--absolute-images"])
    assert res.exit_code in (0, 1, 3), res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["absolute_images"] is True and summary["counts"]["analysed"] == 60
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["roots"]["absolute"] == "/"
    first = str((data.parent / json.loads(data.read_text())[0]["image"]).resolve()).lstrip("/")
    assert f"absolute/{first}" in manifest["files"]
    assert _verify(out, keys).exit_code == 0
