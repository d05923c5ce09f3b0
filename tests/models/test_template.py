"""A checkpoint's chat template is code from a stranger: it renders within bounds or is refused."""

import shutil
import time

import pytest

from auditor.config import Stage1Config
from auditor.errors import AuditInputError
from auditor.models import template
from auditor.models.template import TemplateLimitError, render_bounded

NEVER_ENDS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_a_template_that_never_returns_is_refused_in_one_line(tiny_model, tmp_path, monkeypatch):
    """A 100-byte chat_template.jinja with two nested range(100000) loops is stopped
    in one line instead of hanging the audit."""
    from auditor.pipeline import load

    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    (m / "chat_template.jinja").write_text(NEVER_ENDS)
    monkeypatch.setattr(template, "TEMPLATE_SECONDS", 0.5)
    start = time.monotonic()
    with pytest.raises(AuditInputError,
                       match=r"the chat template did not finish within 0\.5 s; bye-audit refuses"):
        load(m, Stage1Config())
    assert time.monotonic() - start < 30


def test_the_bounds_hold_per_render_and_leave_no_timer_behind():
    def slow():
        while True:
            pass

    start = time.monotonic()
    with pytest.raises(TemplateLimitError, match="did not finish"):
        with template.time_limit(0.2, "the chat template"):
            slow()
    assert time.monotonic() - start < 5
    with pytest.raises(TemplateLimitError,
                       match=r"wrote 100,011 characters around a 1-character instruction"):
        render_bounded(lambda: "x" * 100_011, "q")
    assert render_bounded(lambda: "<user> q <assistant>", "q") == "<user> q <assistant>"
    time.sleep(0.3)  # a timer left armed would fire here and fail the test
