"""Interruptions exit with their own codes (never 0-4, which a gate reads as a
verdict), say what was kept, and a rerun says that it resumes. The signals
are sent to a real `bye-audit` process."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path



CLI = [sys.executable, "-m", "auditor.cli"]


def _as_in_a_terminal() -> None:
    """SIGINT as a terminal's foreground job has it: a suite started in the
    background (`make test &`, nohup) hands its children SIGINT ignored, and
    Python then never raises KeyboardInterrupt (the audit ran to its end, exit 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1], preexec_fn=_as_in_a_terminal)


def _wait_for(cond, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_ctrl_c_mid_stage_1_exits_130_keeps_the_shards_and_the_rerun_resumes(tiny_model, tiny_data, tmp_path):
    # extract: stage 1 alone, the same shards and journal as audit, no report to render on the rerun
    out = tmp_path / "features.parquet"
    # one sample a shard: 60 shards, a few seconds of stage 1
    args = ["extract", "--model", str(tiny_model), "--data", str(tiny_data[0]), "--out", str(out),
            "--no-progress", "--shard-size", "1", "--batch-size", "1", "--no-answers"]
    proc = _start(args)
    parts = tmp_path / "features.parquet.parts"
    _wait_for(lambda: len(list(parts.glob("shard-*.json"))) >= 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(rf"interrupted \(SIGINT\): (\d+) stage-1 shard\(s\) \((\d+) samples\) are kept in "
                     rf"{re.escape(str(parts))}; run the same command to resume from them", last)
    assert m and int(m.group(1)) == int(m.group(2)) >= 3, last
    assert "Aborted" not in err and "Traceback" not in err
    kept = int(m.group(2))

    from click.testing import CliRunner

    from auditor.cli import cli

    again = CliRunner().invoke(cli, args)  # the same command, in this process (its imports are done)
    assert again.exit_code == 0 and out.is_file(), again.output
    assert (f"stage 1: resumed {kept} of 60 samples from the shards an interrupted run saved; "
            f"computing the other {60 - kept}") in again.output


def test_sigterm_while_the_model_loads_exits_143_and_says_nothing_was_kept(tiny_model, tiny_data,
                                                                           tmp_path):
    proc = _start(["audit", "--model", str(tiny_model), "--data", str(tiny_data[0]), "--out",
                   str(tmp_path / "out"), "--no-progress"])
    lines: list[str] = []

    def loading() -> bool:
        lines.append(proc.stderr.readline())
        return "loading the model" in lines[-1]

    _wait_for(loading, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        "interrupted (SIGTERM): no stage-1 shard was complete, nothing is kept; run the same command "
        "to start again")


def test_a_closed_output_pipe_exits_141_quietly(tmp_path):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written (`| head -0`)
    proc = subprocess.run(CLI + ["keygen", "--out", str(tmp_path / "keys")], stdout=write,
                          stderr=subprocess.PIPE, text=True)
    os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""
