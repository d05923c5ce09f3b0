import json

from benchmarks.output_parity import ROOT_NOTE, compare


def _bundle(folder, tree, reasons, extra=None):
    (folder / "b").mkdir(parents=True)
    (folder / ROOT_NOTE).write_text(json.dumps([tree, str(folder)]))
    analysis = {"verdict": "fail", "reasons": reasons, "flagged": [1], "scores": [], "layers": [],
                "score_mixture": None, "counts": {}, "sensitive_layers": [2], "group": None, **(extra or {})}
    (folder / "b" / "analysis.json").write_text(json.dumps(analysis))
    (folder / "b" / "report.html").write_text(f"<p>model at {tree}/m</p>")


def test_compare_maps_paths_lists_changed_keys_and_checks_the_results(tmp_path, capsys):
    _bundle(tmp_path / "x", "/tree-one", ["r"])
    _bundle(tmp_path / "y", "/tree-two", ["r"])
    assert compare(tmp_path / "x", tmp_path / "y") == 0  # the tree path is mapped
    _bundle(tmp_path / "z", "/tree-three", [{"code": "c", "text": "r"}], {"evidence_layers": [2]})
    assert compare(tmp_path / "x", tmp_path / "z") == 1
    out = capsys.readouterr().out
    assert "analysis.json: reasons[].code (1)" in out and "analysis.json: evidence_layers (1)" in out
    assert "1 of 1 bundles" in out  # schema 2's reason texts equal schema 1's strings: the result is the same
    _bundle(tmp_path / "w", "/tree-four", [{"code": "c", "text": "other"}])
    compare(tmp_path / "x", tmp_path / "w")
    assert "RESULT CHANGED: b" in capsys.readouterr().out
    _bundle(tmp_path / "v", "/tree-five", [{"code": "c", "text": "r"}],
            {"evidence_layers": [2], "sensitive_layers": [0], "group": {"g": 1}})
    _bundle(tmp_path / "u", "/tree-six", [{"code": "c", "text": "r"}],
            {"evidence_layers": [2], "sensitive_layers": [0], "group": {"g": 1}})
    assert compare(tmp_path / "v", tmp_path / "u") == 0  # schema 2 on both sides: layers compared as named
    assert "1 of 1 bundles" in capsys.readouterr().out
