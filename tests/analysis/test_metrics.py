import numpy as np
import pytest

from auditor.analysis.metrics import detection_metrics, layer_aurocs


def test_detection_metrics_by_hand():
    pred = np.array([1, 1, 0, 0, 1], bool)
    truth = np.array([1, 0, 1, 0, 0], bool)
    d = detection_metrics(pred, truth)
    assert (d.tp, d.fp, d.fn, d.tn) == (1, 2, 1, 1)
    assert d.precision == pytest.approx(1 / 3)
    assert d.recall == pytest.approx(1 / 2)
    assert d.f1 == pytest.approx(0.4)
    assert d.fpr == pytest.approx(2 / 3)


def test_empty_denominators_are_zero():
    d = detection_metrics(np.zeros(4, bool), np.zeros(4, bool))
    assert (d.precision, d.recall, d.f1, d.fpr) == (0.0, 0.0, 0.0, 0.0)


def test_layer_aurocs_both_directions():
    e = np.array([[0.1, 0.9], [0.2, 0.8], [0.8, 0.2], [0.9, 0.1]])
    truth = np.array([True, True, False, False])
    a = layer_aurocs(e, truth)
    assert a[0]["auroc_low_is_poison"] == 1.0 and a[0]["auroc_high_is_poison"] == 0.0
    assert a[1]["auroc_high_is_poison"] == 1.0
