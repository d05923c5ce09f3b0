"""The report renders from an installed wheel, not only from the source tree (slow)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RENDER = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])  # the wheel's copy, ahead of the editable install
import numpy as np
import auditor
assert Path(auditor.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), auditor.__file__
from auditor.verdict import analyze
from auditor.config import AuditConfig
from auditor.data import read_dataset
from auditor.features import FeatureSet, SampleFeatures
from auditor.report.html import render_html
from auditor.report.pdf import render_pdf
ds = read_dataset(Path(sys.argv[2]))
rng = np.random.default_rng(0)
m = rng.normal(0.8, 0.02, size=(60, 3)); m[:8, 1] = 0.3
rows = tuple(SampleFeatures(i, s.id, "ok", None, 16, tuple(m[i]), tuple(m[i]))
             for i, s in enumerate(ds.samples))
a = analyze(FeatureSet(rows, {"n_layers": 3}), AuditConfig())
html = render_html(a, {"n_layers": 3}, ds)
pdf = render_pdf(html)
assert b"Verdict: FAIL" in html, html[:2000]
assert pdf.startswith(b"%PDF-")
print("rendered", len(html), len(pdf))
"""


@pytest.mark.slow
def test_html_and_pdf_render_from_an_installed_wheel(tmp_path, tiny_data):
    wheels = tmp_path / "wheels"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    wheel = next(wheels.glob("bye_audit-*.whl"))
    assert "auditor/templates/report.html.j2" in zipfile.ZipFile(wheel).namelist()
    site = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                          str(wheel)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    script = tmp_path / "render.py"
    script.write_text(RENDER)
    # Isolated (-I: no cwd, no PYTHONPATH), from outside the source tree.
    res = subprocess.run([sys.executable, "-I", str(script), str(site), str(tiny_data[0])],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert res.stdout.startswith("rendered")
