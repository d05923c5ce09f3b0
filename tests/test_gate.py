import pytest

from auditor.config import AuditConfig
from auditor.errors import ExitCode
from auditor.gate import gate, parse_fail_on


@pytest.mark.parametrize("bad", ["", "count", "count:-1", "count:x", "fraction:1.5", "fraction:", "verdict:1",
                                 "always"])
def test_bad_rules_are_refused_with_the_value(bad):
    with pytest.raises(ValueError, match="fail_on"):
        parse_fail_on(bad)
    with pytest.raises(ValueError):
        AuditConfig.of(fail_on=bad)


def test_verdict_rule_exits_as_the_verdict():
    assert gate("fail", 1, 100, parse_fail_on("verdict")).exit_code == ExitCode.FAIL
    assert gate("pass", 0, 100, parse_fail_on("verdict")).exit_code == ExitCode.PASS
    assert gate("inconclusive", 0, 10, parse_fail_on("verdict")).exit_code == ExitCode.INCONCLUSIVE


def test_count_rule_tolerates_up_to_n():
    assert gate("fail", 3, 100, parse_fail_on("count:3")).exit_code == ExitCode.PASS
    g = gate("fail", 4, 100, parse_fail_on("count:3"))
    assert g.exit_code == ExitCode.FAIL and g.tripped and "4 flagged" in g.reason


def test_fraction_rule_is_relative_to_the_analysed_samples():
    assert gate("fail", 2, 100, parse_fail_on("fraction:0.02")).exit_code == ExitCode.PASS
    assert gate("fail", 3, 100, parse_fail_on("fraction:0.02")).exit_code == ExitCode.FAIL


def test_inconclusive_is_never_turned_into_pass():
    assert gate("inconclusive", 0, 10, parse_fail_on("count:100")).exit_code == ExitCode.INCONCLUSIVE
