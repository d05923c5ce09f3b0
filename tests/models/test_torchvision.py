"""With torchvision installed, as most users have it (scripts/setup-torchvision.sh):
every family gives the features it gives without torchvision, and the combined
processors transformers then builds (Qwen2-VL, Qwen2.5-VL, InternVL) give
exactly the inputs bye-audit assembles without them.

Run where torchvision is importable:
    scripts/setup-torchvision.sh && .venv-tv/bin/python -m pytest tests/models/test_torchvision.py
In the main environment (no torchvision, by design) these tests are skipped and
say so.
"""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from auditor.config import Stage1Config
from auditor.data import read_dataset
from auditor.models.capture import CAPTURE_ATTENTION
from auditor.extract.runner import extract_features, load_image
from auditor.models import load_model
from tinyworld.fixtures import write_digits_dataset

from test_families import WRITERS  # tests/models/ is on the path (pytest prepend mode)

needs_torchvision = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None,
    reason="torchvision is not installed in this environment (the main one has none by design); "
           "run scripts/setup-torchvision.sh, then .venv-tv/bin/python -m pytest "
           "tests/models/test_torchvision.py")

# Features of one checkpoint, printed as JSON, in a process where torchvision
# cannot be imported (transformers then takes its no-torchvision paths).
_WITHOUT = r"""
import json, sys
sys.modules["torchvision"] = None
from auditor.config import AuditConfig
from auditor.data import read_dataset
from auditor.models.capture import CAPTURE_ATTENTION
from auditor.extract.runner import extract_features
from auditor.models import load_model
loaded = load_model(sys.argv[1], capture_attention=CAPTURE_ATTENTION)
rows = extract_features(loaded, read_dataset(sys.argv[2]), Stage1Config(batch_size=3))
print(json.dumps({"processor": type(loaded.processor).__name__, "rows": [r.entropy_norm for r in rows]}))
"""


@needs_torchvision
@pytest.mark.parametrize("family", sorted(WRITERS))
def test_features_are_the_same_with_and_without_torchvision(family, tmp_path):
    writer = WRITERS[family][0]
    model = writer(tmp_path / family)
    data, _ = write_digits_dataset(tmp_path / "data", n=5)
    loaded = load_model(model, capture_attention=CAPTURE_ATTENTION)
    rows = extract_features(loaded, read_dataset(data), Stage1Config(batch_size=3))
    res = subprocess.run([sys.executable, "-c", _WITHOUT, str(model), str(data)], capture_output=True,
                         text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    without = json.loads(res.stdout.strip().splitlines()[-1])
    here = np.array([r.entropy_norm for r in rows])
    np.testing.assert_allclose(here, np.array(without["rows"]), atol=1e-6, rtol=0)


@needs_torchvision
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "internvl"])
def test_the_combined_processor_gives_the_assembled_inputs(family, tmp_path):
    from auditor.models.internvl import AssembledInternVLProcessor
    from auditor.models.qwen2_vl import AssembledProcessor

    model = WRITERS[family][0](tmp_path / family)
    loaded = load_model(model, capture_attention=CAPTURE_ATTENTION)
    combined = loaded.processor
    assert not isinstance(combined, (AssembledProcessor, AssembledInternVLProcessor)), type(combined)
    res = subprocess.run([sys.executable, "-c", _WITHOUT, str(model),
                          str(write_digits_dataset(tmp_path / "data", n=3)[0])],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0
    assert json.loads(res.stdout.strip().splitlines()[-1])["processor"].startswith("Assembled")
    samples = read_dataset(tmp_path / "data" / "dataset.json").samples
    images, prompts = [load_image(s) for s in samples], [s.prompt for s in samples]
    if family == "internvl":
        from transformers import AutoTokenizer, GotOcr2ImageProcessorPil

        from auditor.models.qwen2_vl import read_chat_template

        tok = AutoTokenizer.from_pretrained(model, local_files_only=True)
        assembled = AssembledInternVLProcessor(tok, GotOcr2ImageProcessorPil.from_pretrained(model),
                                               read_chat_template(model, tok),
                                               int(loaded.config.image_seq_length))
    else:
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        from auditor.models.qwen2_vl import read_chat_template

        tok = AutoTokenizer.from_pretrained(model, local_files_only=True)
        assembled = AssembledProcessor(tok, Qwen2VLImageProcessorPil.from_pretrained(model),
                                       read_chat_template(model, tok))
    theirs = loaded.family.build_batch(combined, images, prompts)
    ours = loaded.family.build_batch(assembled, images, prompts)
    for key in ours:
        assert key in theirs, (key, sorted(theirs))
        a, b = torch.as_tensor(theirs[key]), torch.as_tensor(ours[key])
        assert a.shape == b.shape, key
        if a.is_floating_point():
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=key)
        else:
            assert torch.equal(a, b), key
