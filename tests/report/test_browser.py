"""The report in a real browser (Debian's chromium, installed by scripts/setup.sh):
dataset strings stay text, no script runs, the page renders."""

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.report.html import render_html

PAYLOADS = ["<script>alert(1)</script>", "<script>document.title='PWNED'</script>",
            "<img src=x onerror=\"document.title='PWNED'\">", "<img src=x onerror=alert(1)>"]


@pytest.fixture(scope="module")
def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is missing: run scripts/setup.sh (it installs Debian's chromium for the tests)"
    return exe


def _chromium(exe: str, profile: Path, *args: str) -> str:
    res = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-background-networking",
                          f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _title(dom: str) -> str:
    m = re.search(r"<title>(.*?)</title>", dom, re.S)
    return m.group(1) if m else ""


def test_the_browser_check_detects_a_running_script(chromium, tmp_path):
    """Control: without escaping and CSP the same payload does change the page,
    so the checks below can fail."""
    page = tmp_path / "control.html"
    page.write_text(f"<html><head><title>report</title></head><body>{PAYLOADS[1]}</body></html>")
    assert _title(_chromium(chromium, tmp_path / "p", "--dump-dom", page.as_uri())) == "PWNED"


def test_hostile_dataset_strings_render_as_text_and_run_nothing(chromium, synthetic_audit, tmp_path):
    ds, features, a = synthetic_audit(n=60, n_low=8, prompt=lambda i: PAYLOADS[i % len(PAYLOADS)],
                                      record_id=lambda i: PAYLOADS[i % len(PAYLOADS)] + f"#{i}")
    assert a.verdict == "fail"
    rng = np.random.default_rng(0)
    thumb = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    html = render_html(a, features.meta, ds, heatmaps={f.index: (buf.getvalue(), buf.getvalue())
                                                         for f in a.flagged})
    page = tmp_path / "report.html"
    page.write_bytes(html)
    dom = _chromium(chromium, tmp_path / "p", "--dump-dom", page.as_uri())
    assert _title(dom) == "bye-audit report: fail"  # no payload rewrote it
    assert not re.search(r"<img[^>]*\bsrc=\"?x\b", dom)  # no payload became an element
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # ... but each is shown as text
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom
    shot = tmp_path / "shot.png"
    _chromium(chromium, tmp_path / "p", f"--screenshot={shot}", "--window-size=1100,1400",
              "--hide-scrollbars",
              page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3)
    colours = np.unique(pixels, axis=0)
    assert len(colours) > 50, "the screenshot is blank"
    red_banner = np.all(np.abs(pixels.astype(int) - (0xC0, 0x39, 0x2B)) < 8, axis=1).mean()
    assert red_banner > 0.005  # the fail banner is on screen
