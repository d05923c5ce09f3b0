"""Stage 1 over a dataset: features do not depend on how samples are batched."""

import numpy as np
import pytest

from auditor.config import AuditConfig
from auditor.data import read_dataset
from auditor.extract.capture import CAPTURE_ATTENTION
from auditor.extract.runner import extract_features
from auditor.models import load_model
from tinyworld.fixtures import write_digits_dataset
from tinyworld.qwen2vl import write_tiny_qwen2vl


@pytest.fixture(scope="module")
def qwen_model(tmp_path_factory):
    return write_tiny_qwen2vl(tmp_path_factory.mktemp("qwen") / "model")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return write_digits_dataset(tmp_path_factory.mktemp("data21"), n=21)[0]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_batch_of_one_and_batch_of_seven_give_the_same_features(request, tiny_model, small_data, family):
    model_dir = tiny_model if family == "llava" else request.getfixturevalue("qwen_model")
    loaded = load_model(model_dir, capture_attention=CAPTURE_ATTENTION)
    ds = read_dataset(small_data)
    one = extract_features(loaded, ds, AuditConfig(batch_size=1))
    seven = extract_features(loaded, ds, AuditConfig(batch_size=7))
    assert [r.index for r in one] == list(range(len(ds.records))) == [r.index for r in seven]
    assert all(r.status == "ok" for r in one + seven)
    np.testing.assert_allclose(np.array([r.entropy for r in one]), np.array([r.entropy for r in seven]),
                               atol=1e-5, rtol=0)
