from auditor.causes import cause_of, group_reasons


def test_reasons_group_by_cause_largest_first_with_the_first_examples():
    items = [(f"a{i}", f"image file not found: img/{i}.png") for i in range(1000)]
    items += [("b0", "image path '/abs/x.png' is absolute; paths must be relative to the dataset root"),
              ("c0", "prompt is 9,000 tokens, over the limit of 2,048 (--max-prompt-tokens; ...)"),
              ("c1", "prompt is 9,100 tokens, over the limit of 2,048 (--max-prompt-tokens; ...)"),
              ("d0", "something nobody foresaw")]
    groups = group_reasons(items)
    assert [(g.code, g.count) for g in groups] == [("image-missing", 1000), ("prompt-too-long", 2),
                                                   ("image-absolute", 1), ("other", 1)]
    assert groups[0].examples == (("a0", "image file not found: img/0.png"),
                                  ("a1", "image file not found: img/1.png"),
                                  ("a2", "image file not found: img/2.png"))
    assert "--image-root" in groups[0].fix and "--image-root" in groups[0].line()
    assert "1,000 record(s)" in groups[0].line()


def test_every_reason_the_readers_and_runner_write_has_a_cause():
    for reason, code in [
            ("record is not a JSON object", "not-an-object"),
            ("record has no conversations", "no-conversation"),
            ("record has no human turn", "no-conversation"), ("record has no image", "no-image"),
            ("record has 2 images; one image per record is supported", "several-images"),
            ("image is a dict, not a path; embedded images are not supported", "image-not-path"),
            ("image path 'a\\x00' contains a NUL byte", "image-path-invalid"),
            ("image path '../x.png' escapes the dataset root", "image-escapes-root"),
            ("image is 12000 x 14000 (168.0 MP), over the limit of 50,000,000 pixels", "image-too-large"),
            ("cannot decode image: truncated", "image-undecodable"),
            ("forward pass failed: RuntimeError: boom", "forward-failed"),
            ("1 image tokens in the prompt; at least 2 are needed", "too-few-image-tokens"),
            ("non-finite entropy (NaN or inf) in stage 1", "bad-features")]:
        assert cause_of(reason)[0] == code, reason
