from dataclasses import asdict, fields, replace

import pytest

from auditor.config import AuditConfig, Stage1Config
from auditor.extract.shards import fingerprint
from auditor.features.provenance import DatasetRef, ModelRef, Provenance


def test_the_serialised_config_has_the_same_keys_whatever_the_method_and_round_trips():
    bye = AuditConfig.of(method="bye", tau=1.5, bsi_rule="reference", batch_size=4, fail_on="count:3")
    minority = AuditConfig.of(method="minority", group_max_fraction=0.2)
    assert set(bye.to_dict()) == set(minority.to_dict()) == set(AuditConfig().to_dict())
    assert AuditConfig.from_dict(bye.to_dict()) == bye
    assert AuditConfig.from_dict(minority.to_dict()) == minority
    assert bye.to_dict()["group_max_fraction"] == 0.35 and minority.to_dict()["tau"] == 2.0  # defaults


@pytest.mark.parametrize("options, fragment", [
    ({"bsi_rule": "reference"}, "--bsi-rule: a parameter of --method bye, not of --method combined"),
    ({"method": "bye", "group_max_groups": 1}, "--group-max-groups: a parameter of --method minority"),
    ({"workers": 2}, "--workers: only used with --engine ray"),
    ({"threads": 2}, "--threads: only used with --backend onnx"),
    ({"backend": "onnx", "dtype": "bfloat16"}, "the ONNX graph runs in float32"),
    ({"dtype": "float64"}, "dtype must be one of float32, bfloat16, float16"),
    ({"method": "nearest"}, "method must be one of bye, minority, response, combined"),
    ({"fail_on": "sometimes"}, "fail_on 'sometimes'"),
    ({"batch_sizes": 3}, "unknown setting(s): batch_sizes"),
])
def test_every_bad_setting_is_refused_in_one_place(options, fragment):
    with pytest.raises(ValueError) as e:
        AuditConfig.of(**options)
    assert fragment in str(e.value)


def test_every_stage1_setting_but_resume_changes_the_resume_fingerprint():
    meta = Provenance(n_layers=2, tool={"version": "x"}, model=ModelRef("m", "llava", "llava", "m", 2),
                      dataset=DatasetRef("d.json", "json", "d", 10))
    base = Stage1Config()
    changed = {"batch_size": 2, "dtype": "bfloat16", "device": "cpu", "entropy_eps": 1e-9,
               "allow_pickle": True, "max_answer_tokens": 7,
               "per_head": True, "shard_size": 2, "max_image_pixels": 10, "max_prompt_tokens": 5,
               "backend": "onnx", "engine": "ray", "attn_implementation": "sdpa", "answers": False,
               "base_pass": False, "absolute_images": True}
    for f in fields(Stage1Config):
        if f.name in ("resume", "base_sha256", "attn_implementation", "provider", "allow_fallback", "threads",
                      "workers", "gpus_per_worker"):
            continue  # resume and the pin by design; the others only exist with their backend or engine
        assert fingerprint(meta, replace(base, **{f.name: changed[f.name]})) != fingerprint(meta,
                                                                                            base), f.name
    assert fingerprint(meta, replace(base, resume=False)) == fingerprint(meta, base)
    ray = Stage1Config(engine="ray")
    assert fingerprint(meta, replace(ray, workers=3)) != fingerprint(meta, ray)
    assert set(asdict(base)) >= set(changed)
