import io
import re
import time

from auditor.console import Reporter


def test_off_a_terminal_steps_are_lines_and_stage_1_has_a_heartbeat():
    out = io.StringIO()
    r = Reporter(out, bar=False, heartbeat_s=0.05)
    r.step("loading the model m")
    r.start(1000)
    r.advance(250)
    time.sleep(0.3)  # several heartbeats while no sample finishes (a slow batch on a 7B model)
    r.step("stages 2-3")
    r.close()
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"bye-audit: \[\d+ s\] loading the model m", lines[0])
    beats = [ln for ln in lines if "stage 1: 250/1,000 samples (25%)" in ln]
    assert len(beats) >= 2 and "samples/s, about" in beats[0]
    assert lines[-1].endswith("stages 2-3")
    n = len(lines)
    time.sleep(0.2)
    assert len(out.getvalue().splitlines()) == n  # the heartbeat stops with stage 1


def test_no_progress_means_no_heartbeat_but_still_the_steps():
    out = io.StringIO()
    r = Reporter(out, bar=False, progress=False, heartbeat_s=0.01)
    r.start(10)
    time.sleep(0.1)
    r.step("writing")
    r.close()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]] and "writing" in out.getvalue()


def test_the_terminal_bar_fits_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    r = Reporter(out, bar=True)
    r.start(1000)
    r.advance(1000)
    r.step("stages 2-3")
    r.close()
    text = out.getvalue()
    assert "1000/1000" in text and "…" not in text and "..." not in text
    assert all(len(ln) <= 80 for ln in text.splitlines() if "stage 1" in ln)


def test_resumed_samples_are_announced_once_and_left_out_of_the_rate(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    out = io.StringIO()
    r = Reporter(out, bar=False, progress=False)
    r.start(1000)
    r.resumed(600)
    now[0] = 10.0
    r.advance(100)  # 100 samples in 10 s: 10/s, 300 left: 30 s (not 70/s from 700 done)
    assert out.getvalue().splitlines() == [
        "bye-audit: stage 1: resumed 600 of 1,000 samples from the shards an interrupted run saved; "
        "computing the other 400"]
    assert r.heartbeat_line() == ("stage 1: 700/1,000 samples (70%) (600 resumed), 10.00 samples/s, "
                                  "about 30 s left")


def test_every_long_step_has_a_heartbeat_off_a_terminal():
    """Every long step (stage 1, the base pass, the heatmaps) writes a heartbeat
    off a terminal, not only stage 1."""
    out = io.StringIO()
    r = Reporter(out, bar=False, heartbeat_s=0.05)
    r.step("attention heatmaps of the samples the report shows")
    time.sleep(0.3)
    r.close()
    beats = [ln for ln in out.getvalue().splitlines()
             if "still attention heatmaps of the samples the report shows (" in ln]
    assert len(beats) >= 2 and beats[0].endswith("so far)")
