"""Every command through CliRunner: exit codes, outputs, and one-line errors."""

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from auditor import __version__
from auditor.cli import cli

COMMANDS = ["audit", "extract", "analyze", "export-features", "evaluate", "keygen", "verify"]
EXIT = {"pass": 0, "fail": 1, "inconclusive": 3}


@pytest.fixture(scope="module")
def audited(tiny_model, tiny_data, tmp_path_factory):
    data, bad = tiny_data
    out = tmp_path_factory.mktemp("audit") / "out"
    # the tiny model has no base: an attention-only audit, accepted (else nothing found is inconclusive)
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(data),
                                   "--out", str(out), "--no-progress", "--attention-only"])
    return res, out, data, bad


def test_version():
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help(cmd):
    res = CliRunner().invoke(cli, [cmd, "--help"])
    assert res.exit_code == 0 and "Usage:" in res.output


def test_audit_exit_code_matches_its_verdict(audited):
    res, out, _, _ = audited
    analysis = json.loads((out / "analysis.json").read_text())
    assert res.exit_code == EXIT[analysis["verdict"]], res.output
    assert f"verdict: {analysis['verdict'].upper()}" in res.output
    for name in ["features.parquet", "analysis.json", "flagged.jsonl", "unanalysed.jsonl", "cleaned.json",
                 "report.html", "report.pdf", "summary.json"]:
        assert (out / name).is_file(), name
    assert analysis["counts"]["records"] == 60 and analysis["counts"]["analysed"] == 60
    assert len(analysis["layers"]) == 8


def test_audit_outputs_partition_the_input(audited):
    _, out, data, _ = audited
    records = json.loads(data.read_text())
    cleaned = json.loads((out / "cleaned.json").read_text())
    flagged = [json.loads(ln) for ln in (out / "flagged.jsonl").read_text().splitlines()]
    flagged += [json.loads(ln) for ln in (out / "unanalysed.jsonl").read_text().splitlines()]
    by_index = {f["index"]: f["record"] for f in flagged}
    kept = iter(cleaned)
    assert [by_index[i] if i in by_index else next(kept) for i in range(len(records))] == records
    assert next(kept, None) is None


def test_analyze_reproduces_the_audit_from_features(audited, tmp_path):
    _, out, data, _ = audited
    res = CliRunner().invoke(cli, ["analyze", str(out / "features.parquet"),
                                   "--data", str(data), "--out", str(tmp_path / "again"), "--attention-only"])
    first = json.loads((out / "analysis.json").read_text())
    second = json.loads((tmp_path / "again" / "analysis.json").read_text())
    assert res.exit_code == EXIT[first["verdict"]]
    # Only the audit ran stage 1: its record of reused shards (none: one uninterrupted run)
    assert first.pop("resume") == {"resumed_shards": [], "discarded_shards": []} and "resume" not in second
    assert first == second  # deterministic
    steps = [re.sub(r"^analyze: \[[^]]*\] ", "", line).split(" ")[0] for line in res.stderr.splitlines()
             if line.startswith("analyze: ")]
    assert steps == ["reading", "reading", "stages",
                     "writing"] and "verdict:" in res.stdout  # steps on stderr only
    # (the reports may differ: without the model, analyze draws no heatmaps)
    for name in ["cleaned.json", "flagged.jsonl"]:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    assert (tmp_path / "again" / "features.parquet").read_bytes() == (out / "features.parquet").read_bytes()


def test_evaluate_prints_metrics(audited):
    _, out, _, bad = audited
    truth = out.parent / "truth.txt"
    truth.write_text("\n".join(bad) + "\n")
    res = CliRunner().invoke(cli, ["evaluate", str(out), "--truth", str(truth), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)
    flagged = {json.loads(ln)["id"] for ln in (out / "flagged.jsonl").read_text().splitlines()}
    assert m["tp"] == len(flagged & set(bad)) and m["fp"] == len(flagged - set(bad))
    assert m["tp"] + m["fn"] == len(bad) and m["n"] == 60
    assert {r["layer"] for r in m["layer_auroc"]} == set(range(8))


def test_extract_writes_features(tiny_model, tiny_data, tmp_path):
    data, _ = tiny_data
    res = CliRunner().invoke(cli, ["extract", "--model", str(tiny_model), "--data", str(data),
                                   "--out", str(tmp_path / "f.parquet"), "--no-progress", "--batch-size",
                                   "5"])
    assert res.exit_code == 0, res.output
    assert "60 rows, 60 analysed" in res.output


STATUS = re.compile(r"^[a-z-]+: \[[0-9a-z ]+\] ")  # a step line: "bye-audit: [3 s] loading the model ..."


def _one_line_error(res, *fragments):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip() and not STATUS.match(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for f in fragments:
        assert f in lines[0]
    assert "Traceback" not in res.output


def test_invalid_json_is_one_line_exit_2(tiny_model, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 1,}]')
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(bad),
                                   "--out", str(tmp_path / "o")])
    _one_line_error(res, "bad.json:1:11", "invalid JSON")


def test_model_without_safetensors_is_one_line_exit_2(tiny_model, tiny_data, tmp_path):
    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    (m / "model.safetensors").unlink()
    res = CliRunner().invoke(cli, ["audit", "--model", str(m), "--data", str(tiny_data[0]),
                                   "--out", str(tmp_path / "o")])
    _one_line_error(res, "no .safetensors weights")


def test_output_folder_that_would_overwrite_an_input_is_refused(tiny_model, tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    (d / "cleaned.json").write_text("[]")  # the dataset itself is named like an output
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(d / "cleaned.json"),
                                   "--out", str(d)])
    _one_line_error(res, "would overwrite an input")
    assert (d / "cleaned.json").read_text() == "[]"
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(d / "cleaned.json"),
                                   "--out", str(tiny_model / "out")])
    _one_line_error(res, "inside the model folder")


def test_skipped_records_are_counted_and_reported(tiny_model, tiny_data, tmp_path):
    data, _ = tiny_data
    records = json.loads(data.read_text())
    records[3]["image"] = "images/missing.png"
    del records[7]["image"]
    p = data.parent / "with_gaps.json"
    p.write_text(json.dumps(records))
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(p),
                                   "--out", str(tmp_path / "o"), "--no-progress", "--attention-only"])
    a = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert a["counts"]["skipped"] == 2 and a["counts"]["analysed"] == 58
    assert "2 skipped" in res.output
    # 58/60 = 96.7% coverage is above the 95% default; the verdict stands
    assert res.exit_code == EXIT[a["verdict"]]
    html = (tmp_path / "o" / "report.html").read_text()
    assert "image file not found: images/missing.png" in html and "record has no image" in html


def test_extract_refuses_to_overwrite_the_dataset(tiny_model, tiny_data):
    data, _ = tiny_data
    before = data.read_bytes()
    res = CliRunner().invoke(cli, ["extract", "--model", str(tiny_model), "--data", str(data),
                                   "--out", str(data), "--no-progress"])
    _one_line_error(res, "would overwrite an input")
    assert data.read_bytes() == before


def test_audit_of_a_parquet_dataset_writes_a_parquet_copy(tiny_model, tiny_data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, _ = tiny_data
    records = json.loads(data.read_text())
    p = data.parent / "dataset.parquet"
    pq.write_table(pa.Table.from_pylist(records), p)
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(p),
                                   "--out", str(tmp_path / "o"), "--no-progress", "--attention-only"])
    a = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert res.exit_code == EXIT[a["verdict"]] and a["counts"]["analysed"] == 60
    kept = pq.read_table(tmp_path / "o" / "cleaned.parquet").to_pylist()
    assert len(kept) + a["counts"]["flagged"] == 60


def test_a_sample_that_breaks_the_forward_pass_becomes_an_error_row(tiny_model, tiny_data, tmp_path,
                                                                   monkeypatch):
    from auditor.models.llava import LlavaFamily

    real = LlavaFamily.build_batch

    def fragile(self, processor, images, prompts):
        if any("Name the digit" in p for p in prompts):
            raise ValueError("prompt too long for this model")
        return real(self, processor, images, prompts)

    monkeypatch.setattr(LlavaFamily, "build_batch", fragile)
    data, _ = tiny_data
    res = CliRunner().invoke(cli, ["extract", "--model", str(tiny_model), "--data", str(data),
                                   "--out", str(tmp_path / "f.parquet"), "--no-progress"])
    assert res.exit_code == 0, res.output
    from auditor.features import read_features

    rows = read_features(tmp_path / "f.parquet").rows
    errors = [r for r in rows if r.status == "error"]
    assert len(errors) == 12  # every 5th of 60 prompts is "Name the digit in this picture."
    assert all(r.reason == "forward pass failed: ValueError: prompt too long for this model" for r in errors)
    assert {r.cause for r in errors} == {"forward-failed"}  # kept in the file: analyze needs no prose
    res = CliRunner().invoke(cli,
                             ["extract", "--model", str(tiny_model), "--data", str(data), "--batch-size", "1",
                                   "--out", str(tmp_path / "g.parquet"), "--no-progress"])
    assert res.exit_code == 0 and "60 rows, 48 analysed" in res.output
    assert sum(r.status == "ok" for r in rows) == 48


def test_summary_follows_its_schema_and_vouches_for_the_outputs(audited):
    import hashlib
    from pathlib import Path

    import jsonschema

    res, out, _, _ = audited
    schema = json.loads((Path(__file__).parents[1] / "docs" / "summary.schema.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    jsonschema.validate(summary, schema)
    assert summary["exit_code"] == res.exit_code
    assert summary["counts"]["records"] == 60
    assert set(summary["outputs_sha256"]) == {"features.parquet", "analysis.json", "flagged.jsonl",
                                              "unanalysed.jsonl", "cleaned.json", "report.html", "report.pdf",
                                              "findings.sarif"}
    for name, digest in summary["outputs_sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    # The versions that produced it: stage 1's and this process's, as installed.
    from importlib.metadata import version

    for env in (summary["environment"]["libraries"], summary["analysis_environment"]["libraries"]):
        assert {k: env[k] for k in ("torch", "transformers", "tokenizers", "peft", "numpy")} == {
            k: version(k) for k in ("torch", "transformers", "tokenizers", "peft", "numpy")}
    report = (out / "report.html").read_text()
    assert f"transformers {version('transformers')}; tokenizers {version('tokenizers')}" in report
    summary["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(summary, schema)


@pytest.mark.parametrize("rule, code", [("verdict", 1), ("count:7", 1), ("count:8", 0), ("fraction:0.1", 1),
                                        ("fraction:0.2", 0)])
def test_fail_on_sets_the_exit_code_of_a_fail_verdict(synthetic_audit, tmp_path, rule, code):
    from auditor.features import render_features

    ds, features, a = synthetic_audit(n=60, n_low=8)  # 8 of 60 flagged (13%)
    assert a.verdict == "fail" and len(a.flagged) == 8
    (tmp_path / "f.parquet").write_bytes(render_features(features))
    out = tmp_path / f"out-{rule.replace(':', '-')}"
    res = CliRunner().invoke(cli, ["analyze", str(tmp_path / "f.parquet"), "--data", str(ds.path),
                                   "--out", str(out), "--fail-on", rule])
    assert res.exit_code == code, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "fail" and summary["exit_code"] == code
    assert summary["gate"] == {"fail_on": rule, "tripped": code == 1, "reason": summary["gate"]["reason"]}
    sarif = json.loads((out / "findings.sarif").read_text())
    assert sarif["runs"][0]["invocations"][0]["exitCode"] == code


def test_analyze_reads_the_instructions_from_the_dataset(synthetic_audit, tmp_path):
    """The same separated group fails when it cuts across instructions and
    passes, naming the text, when it is exactly one instruction's samples."""
    from auditor.features import render_features

    for prompt, verdict in ((lambda i: f"What digit is shown? ({i % 3})", "fail"),
                            (lambda i: "Which colour is it?" if i < 20 else f"What digit? ({i % 3})",
                             "pass")):
        ds, features, _ = synthetic_audit(n=200, n_low=20, prompt=prompt)
        (tmp_path / "f.parquet").write_bytes(render_features(features))
        out = tmp_path / f"out-{verdict}"
        res = CliRunner().invoke(cli, ["analyze", str(tmp_path / "f.parquet"), "--data", str(ds.path),
                                       "--out", str(out), "--attention-only"])
        assert res.exit_code == EXIT[verdict], res.output
        reasons = json.loads((out / "analysis.json").read_text())["reasons"]
        # the terminal prints each reason's sentence (not the record's repr)
        printed = [ln[4:] for ln in res.output.splitlines() if ln.startswith("  - ")]
        assert printed == [r["text"] for r in reasons]
        group = json.loads((out / "analysis.json").read_text())["channels"]["attention"]["group"]
        assert group["instruction"]["texts"] == (["Which colour is it?"] if verdict == "pass" else [])


def test_a_malformed_fail_on_is_a_usage_error(synthetic_audit, tmp_path):
    res = CliRunner().invoke(cli, ["analyze", str(tmp_path / "f.parquet"), "--data", str(tmp_path / "d.json"),
                                   "--out", str(tmp_path / "o"), "--fail-on", "sometimes"])
    assert res.exit_code == 2 and "fail_on 'sometimes'" in res.output


def test_an_option_of_another_method_is_refused_not_ignored(tmp_path):
    """`analyze --bsi-rule reference` under a method without that rule is refused:
    ignored, the user would believe the reference rule had run."""
    res = CliRunner().invoke(cli, ["analyze", str(tmp_path / "f.parquet"), "--data", str(tmp_path / "d.json"),
                                   "--out", str(tmp_path / "o"), "--bsi-rule", "reference"])
    _one_line_error(res, "--bsi-rule: a parameter of --method bye, not of --method combined")


@pytest.mark.parametrize("args, fragment", [
    (["--dtype", "float16", "--device", "cpu"], "float16 needs a CUDA device"),
    (["--device", "gpu"], "device must be auto, cpu, cuda or cuda:N"),
])
def test_unusable_device_or_dtype_is_one_line_exit_2(tiny_model, tiny_data, tmp_path, args, fragment):
    res = CliRunner().invoke(cli, ["extract", "--model", str(tiny_model), "--data", str(tiny_data[0]),
                                   "--out", str(tmp_path / "f.parquet"), "--no-progress", *args])
    _one_line_error(res, fragment)


# Hostile inputs and failures: never data loss, never a traceback, never exit 1

@pytest.mark.parametrize("target", ["model.safetensors", "sub/features.parquet"])
def test_extract_never_writes_into_the_model_folder(tiny_model, tiny_data, tmp_path, target):
    """`extract --out M/model.safetensors` is refused: outputs never replace an input."""
    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    weights = (m / "model.safetensors").read_bytes()
    res = CliRunner().invoke(cli, ["extract", "--model", str(m), "--data", str(tiny_data[0]),
                                   "--out", str(m / target), "--no-progress"])
    assert res.exit_code == 2 and "inside the model folder" in res.stderr, res.output
    assert (m / "model.safetensors").read_bytes() == weights and not (m / "sub").exists()


def test_an_unexpected_exception_exits_4_with_one_line_and_a_log(audited, tmp_path, monkeypatch):
    """An unexpected exception exits 4 with one line and a log, never 1, which a
    release gate reads as "samples flagged"."""
    from auditor import pipeline

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(pipeline, "analyze_file", broken)
    _, out, data, _ = audited
    res = CliRunner().invoke(cli, ["analyze", str(out / "features.parquet"), "--data", str(data),
                                   "--out", str(tmp_path / "again")])
    log = tmp_path / "again" / "bye-audit-error.log"
    assert res.exit_code == 4
    assert res.stderr == (f"internal error: ZeroDivisionError: division by zero (the traceback is in {log}; "
                          "please report it with that file)\n")
    assert "Traceback (most recent call last)" in log.read_text() and "broken" in log.read_text()


def test_an_unwritable_output_folder_stops_the_audit_before_stage_1(tiny_model, tiny_data, tmp_path,
                                                                    monkeypatch):
    """A read-only --out or a full disk ends in one line (exit 2) before stage 1, not in
    a traceback and half a bundle."""
    import tempfile

    from auditor import pipeline

    def refuse(*a, **k):  # a read-only folder (the tests run as root, who may write anywhere)
        raise PermissionError(13, "Permission denied")

    def no_model(*a, **k):
        raise AssertionError("stage 1 started")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(pipeline, "load", no_model)
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]),
                                   "--out", str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines()[-1] == (f"error: {tmp_path / 'out'}: cannot write there (Permission "
                                           "denied); choose another output location")
    assert "loading the model" not in res.stderr  # stopped before stage 1


def test_a_resumed_audit_lists_its_shards_and_recomputes_a_tampered_one(tiny_model, tiny_data, tmp_path,
                                                                        monkeypatch):
    """Resume re-checks every finished shard: one whose rows were overwritten
    (metadata kept) is redone, not trusted to decide the verdict."""
    from auditor.extract import shards
    from auditor.features import read_features
    from auditor.fileio import write_bytes_atomic

    monkeypatch.setattr(shards, "clear", lambda parts: None)  # keep the parts, as an interrupted run would
    out = tmp_path / "out"
    args = ["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]), "--out", str(out),
            "--no-progress",
            "--shard-size", "16"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code in (0, 1, 3), first.output
    parts = out / ".features.parts"
    assert json.loads((out / "analysis.json").read_text())["resume"]["resumed_shards"] == []
    rows = list(read_features(shards.shard_path(parts, 2)).rows)
    swapped = [type(r)(r.index, r.id, r.status, r.reason, r.n_image_tokens, rows[0].entropy,
                       rows[0].entropy_norm)
               for r in rows]
    write_bytes_atomic(shards.shard_path(parts, 2), shards.render_shard(
        read_features(shards.shard_path(parts, 2)).meta["fingerprint"], swapped))
    again = CliRunner().invoke(cli, args + ["--sign-key", str(_key(tmp_path)), "--overwrite"])
    assert again.exit_code == first.exit_code, again.output
    resume = json.loads((out / "analysis.json").read_text())["resume"]
    assert resume == {"resumed_shards": [0, 1, 3], "discarded_shards": [
        {"shard": 2, "reason": "its SHA-256 differs from the journal's: changed after it was written"}]}
    assert json.loads((out / "manifest.json").read_text())["resume"] == resume  # signed with the manifest
    # recomputed
    assert read_features(out / "features.parquet").rows[rows[1].index].entropy == rows[1].entropy
    monkeypatch.undo()  # --no-resume deletes the kept parts first
    res = CliRunner().invoke(cli, args + ["--no-resume", "--overwrite"])
    assert json.loads((out / "analysis.json").read_text())["resume"] == {"resumed_shards": [],
                                                                        "discarded_shards": []}, res.output
    assert not parts.exists()


def _key(tmp_path):
    res = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path / "keys")])
    assert res.exit_code == 0, res.output
    return tmp_path / "keys" / "bye-audit.key"


def test_a_mistyped_path_is_reported_before_any_heavy_import(tmp_path):
    """`audit --model typo` fails before torch and scikit-learn are imported (that
    import alone takes ~8 s)."""
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom auditor.cli import cli\nr = "
            "CliRunner().invoke(cli, ['audit', '--model', 'typo', '--data', 'x.json', '--out', 'o'])\n"
            "print(r.exit_code)\nprint(r.output.strip())\nprint(sorted(m for m in ('torch', 'sklearn', "
            "'transformers', 'weasyprint', 'pyarrow') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    code_, line, heavy = res.stdout.splitlines()
    assert code_ == "2" and line == "error: typo: model folder not found; pass an existing folder to --model"
    assert heavy == "[]"


def test_an_earlier_bundle_is_replaced_only_with_overwrite(audited, tmp_path):
    _, out, data, _ = audited
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    args = ["analyze", str(out / "features.parquet"), "--data", str(data), "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    _one_line_error(res, "holds the bundle of an earlier audit", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    res = CliRunner().invoke(cli, args[:-1] + [str(other)])
    _one_line_error(res, "not empty", "'notes.txt'")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    res = CliRunner().invoke(cli,
                             ["analyze", str(copy / "features.parquet"), "--data", str(data), "--out",
                              str(copy), "--overwrite", "--attention-only"])
    assert res.exit_code in (0, 1, 3), res.output
    verdict = json.loads(before["analysis.json"])["verdict"]
    assert json.loads((copy / "analysis.json").read_text())["verdict"] == verdict
    alone = tmp_path / "alone"  # extract's features, then analyze beside them: no --overwrite needed
    alone.mkdir()
    shutil.copy(out / "features.parquet", alone)
    res = CliRunner().invoke(cli,
                             ["analyze", str(alone / "features.parquet"), "--data", str(data), "--out",
                              str(alone)])
    assert res.exit_code in (0, 1, 3) and (alone / "report.pdf").is_file(), res.output


def test_when_most_records_cannot_be_read_the_cause_and_fix_are_the_error(tiny_model, tiny_data, tmp_path):
    """When most records cannot be read (e.g. absolute image paths), the error names
    the cause and the fix, not only "INCONCLUSIVE ... 0 of 1000 samples"."""
    data, _ = tiny_data
    records = json.loads(data.read_text())
    for r in records:
        r["image"] = str((data.parent / r["image"]).resolve())
    absolute = tmp_path / "absolute.json"
    absolute.write_text(json.dumps(records))
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(absolute),
                                   "--out", str(tmp_path / "o"), "--no-progress"])
    _one_line_error(res, f"{absolute}: 60 of 60 records cannot be analysed",
                    "absolute image path: 60 record(s)",
                    "relative to the dataset's folder")
    assert "loading the model" not in res.output  # refused before stage 1
    moved = tmp_path / "moved" / "dataset.json"
    moved.parent.mkdir()
    shutil.copy(data, moved)  # the images stayed behind
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(moved),
                                   "--out", str(tmp_path / "o2"), "--no-progress"])
    _one_line_error(res, "image file not found: 60 record(s)", "pass --image-root FOLDER")


def test_evaluate_names_the_missed_and_wrongly_flagged_ids(audited):
    _, out, _, bad = audited
    truth = out.parent / "truth-table.txt"
    truth.write_text("\n".join(bad) + "\n")
    res = CliRunner().invoke(cli, ["evaluate", str(out), "--truth", str(truth)])
    assert res.exit_code == 0, res.output
    flagged = {json.loads(ln)["id"] for ln in (out / "flagged.jsonl").read_text().splitlines()}
    missed, wrong = sorted(set(bad) - flagged), sorted(flagged - set(bad))
    text = res.stdout
    assert "precision" in text and "recall" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("missed"))
    assert all(repr(i) in line for i in missed) and (missed or line.endswith("none"))
    line = next(ln for ln in text.splitlines() if ln.startswith("wrongly flagged"))
    assert all(repr(i) in line for i in wrong) and (wrong or line.endswith("none"))
    old = CliRunner().invoke(cli, ["evaluate", "--out", str(out), "--truth", str(truth)])
    assert old.exit_code == 0 and "deprecated" in old.stderr and old.stdout == res.stdout
    j = json.loads(CliRunner().invoke(cli, ["evaluate", str(out), "--truth", str(truth), "--json"]).stdout)
    assert list(j)[:2] == ["verdict", "n"] and j["missed"] == missed and j["wrongly_flagged"] == wrong
    assert all(len(repr(v).split(".")[-1]) <= 6 for v in j.values() if isinstance(v, float))


def test_audit_help_groups_its_options_and_gives_an_example_and_the_exit_codes():
    text = CliRunner().invoke(cli, ["audit", "--help"]).output
    for heading in ["Inputs:", "Output:", "Detection (stages 2-3):", "Stage 1 (the model's forward passes):",
                    "ONNX Runtime backend:", "Ray engine (scale-out):"]:
        assert heading in text
    assert text.index("--sign-key") < text.index("--method")  # signing is with the outputs, not last
    assert "Example:" in text and "Exit codes: 0 pass, 1 fail" in text
    assert "bye-audit audit --model ckpt/ --base base/" in text  # a full fine-tune's first audit needs it
    assert "--base BASE" in CliRunner().invoke(cli, ["--help"]).output.split("Start with:")[1].splitlines()[0]


@pytest.mark.parametrize("epoch", ["abc", "1e9", "", "-5", " "])
def test_a_bad_source_date_epoch_is_an_input_error_before_stage_1(tiny_model, tiny_data, tmp_path,
                                                                   monkeypatch, epoch):
    """A bad SOURCE_DATE_EPOCH is refused up front with exit 2, before stages 1-3
    (a negative value would date the audit 1969)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]),
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == (f"error: SOURCE_DATE_EPOCH={epoch!r}: not a Unix time (whole seconds since "
                                  "1970, e.g. 1765000000); unset it or give one")
    assert not out.exists()


def test_an_input_error_found_after_the_output_folder_was_made_leaves_no_empty_folder(tiny_data, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{not json")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["audit", "--model", str(model), "--data", str(tiny_data[0]),
                                   "--out", str(out), "--no-progress"])
    assert res.exit_code == 2 and "config.json: not valid JSON" in res.output.splitlines()[-1], res.output
    assert not out.exists()


def test_overwrite_replaces_a_bundle_but_never_mixes_it_with_other_files(audited, tmp_path):
    _, out, data, _ = audited
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    (mixed / "reviewer-notes.txt").write_text("keep me")
    res = CliRunner().invoke(cli, ["analyze", str(mixed / "features.parquet"), "--data", str(data),
                                   "--out", str(mixed), "--overwrite"])
    assert res.exit_code == 2, res.output
    assert "1 other file(s), e.g. 'reviewer-notes.txt'; --overwrite replaces only a bundle" in res.output
    assert (mixed / "reviewer-notes.txt").read_text() == "keep me"


def test_evaluate_refuses_a_truth_file_that_is_not_utf8_and_warns_on_an_empty_one(audited, tmp_path):
    _, out, _, _ = audited
    latin = tmp_path / "truth.txt"
    latin.write_bytes(b"s0001\ncaf\xe9\n")
    res = CliRunner().invoke(cli, ["evaluate", str(out), "--truth", str(latin)])
    assert res.exit_code == 2 and res.output.strip() == (
        f"error: {latin}: not UTF-8 text (byte 9); pass a UTF-8 file of poisoned ids, one per line")
    empty = tmp_path / "empty.txt"
    empty.write_text("# no ids\n")
    res = CliRunner().invoke(cli, ["evaluate", str(out), "--truth", str(empty)])
    assert res.exit_code == 0
    assert f"warning: {empty} lists no poisoned ids" in res.output


@pytest.mark.parametrize("case", ["base config", "base weights", "adapter with base"])
def test_base_and_adapter_folders_are_checked_before_any_model_loads(tiny_model, tiny_data, tmp_path,
                                                                     monkeypatch, case):
    """A damaged --base, or --adapter with --base, is refused before the submission
    loads (minutes for a real model)."""
    import auditor.models

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(auditor.models, "load_model", never)
    base = tmp_path / "base"
    shutil.copytree(tiny_model, base)
    extra = ["--base", str(base)]
    if case == "base config":
        (base / "config.json").write_text("{")
        fragment = f"{base / 'config.json'}: not valid JSON"
    elif case == "base weights":
        for p in base.glob("*.safetensors"):
            p.unlink()
        fragment = f"{base}: no .safetensors weights"
    else:
        adapter = tmp_path / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text("{}")
        (adapter / "adapter_model.safetensors").write_bytes(b"")
        extra += ["--adapter", str(adapter)]
        fragment = "with --adapter the base is the model the adapter applies to (--model); drop --base"
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]),
                                   "--out", str(tmp_path / "out"), "--no-progress", *extra])
    assert res.exit_code == 2 and fragment in res.output.splitlines()[-1], res.output


def test_an_unsupported_dataset_type_is_refused_before_any_heavy_import(tiny_model, tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("id,image\n")
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(data), "--out",
                                   str(tmp_path / "out")])
    assert res.exit_code == 2
    assert res.output.strip() == (f"error: {data}: unsupported dataset format '.csv'; supported: .json, "
                                  ".jsonl, .parquet")


@pytest.mark.parametrize("case", ["mismatch", "no base"])
def test_a_pinned_base_that_differs_stops_the_audit_before_any_model_loads(tiny_model, tiny_data, tmp_path,
                                                                           monkeypatch, case):
    import auditor.models
    from auditor.fileio import sha256_tree

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded before the base's digest was checked")

    monkeypatch.setattr(auditor.models, "load_model", never)
    base = tmp_path / "base"
    shutil.copytree(tiny_model, base)
    pinned = "0" * 64
    extra = ["--base-sha256", pinned] + (["--base", str(base)] if case == "mismatch" else [])
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]),
                                   "--out", str(tmp_path / "out"), "--no-progress", *extra])
    last = res.output.splitlines()[-1]
    assert res.exit_code == 2, res.output
    if case == "mismatch":
        assert f"{base}: its tree digest is {sha256_tree(base)}, not the pinned --base-sha256 {pinned}" \
            in last
    else:
        assert "--base-sha256: there is no base to pin" in last


def test_the_submission_as_its_own_base_is_inconclusive_and_the_base_is_signed_and_verified(
        tiny_model, tiny_data, tmp_path):
    """The base is a root of the manifest and a subject of the attestation, and
    verify re-hashes it; the submission given as its own base is inconclusive."""
    base = tmp_path / "base"
    shutil.copytree(tiny_model, base)
    keys = tmp_path / "keys"
    assert CliRunner().invoke(cli, ["keygen", "--out", str(keys)]).exit_code == 0
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["audit", "--model", str(tiny_model), "--base", str(base), "--data",
                                   str(tiny_data[0]), "--out", str(out), "--no-progress",
                                   "--sign-key", str(keys / "bye-audit.key")])
    assert res.exit_code == 3, res.output
    analysis = json.loads((out / "analysis.json").read_text())
    assert "base_not_informative" in {r["code"] for r in analysis["reasons"]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["roots"]["base"] == str(base.resolve())
    assert {f"base/{p.name}" for p in base.iterdir() if p.is_file()} <= set(manifest["files"])
    moved = tmp_path / "moved-base"
    base.rename(moved)
    res = CliRunner().invoke(cli, ["verify", str(out), "--key", str(keys / "bye-audit.pub")])
    assert res.exit_code == 1 and "base/" in res.output
    res = CliRunner().invoke(cli, ["verify", str(out), "--key", str(keys / "bye-audit.pub"), "--base",
                                   str(moved)])
    assert res.exit_code == 0, res.output
