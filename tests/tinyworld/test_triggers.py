"""Each trigger does what its name says to the pixels, is seeded, and never touches its input."""

import numpy as np
import pytest
from PIL import Image

from tinyworld.digits import load_digit_arrays, render_digit
from tinyworld.triggers import GLOBAL, LOCAL, SIG, TRIGGERS, Blend, CheckerboardPatch, RandomPatch, WaNet


def _digit(k=0, size=64):
    x, _ = load_digit_arrays()
    return render_digit(x[k], np.random.default_rng(k), size=size)


def _a(image):
    return np.asarray(image, dtype=np.int64)


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_every_trigger_is_pure_seeded_and_changes_the_image(name):
    image = _digit()
    before = _a(image).copy()
    trig = TRIGGERS[name]
    a = trig.apply(image, np.random.default_rng(5))
    b = trig.apply(image, np.random.default_rng(5))
    assert np.array_equal(_a(image), before)  # input untouched
    assert np.array_equal(_a(a), _a(b))  # same seeds, same image
    assert a.size == image.size and a.mode == "RGB"
    assert np.abs(_a(a) - before).sum() > 0
    assert set(LOCAL) | set(GLOBAL) == set(TRIGGERS)


def test_centre_patch_blackens_the_centre_only():
    image = _digit()
    out = _a(TRIGGERS["centre_patch"].apply(image, np.random.default_rng(0)))
    side = round(64 * 3 / 16)
    c = (64 - side) // 2
    assert (out[c:c + side, c:c + side] == 0).all()
    mask = np.ones((64, 64), bool)
    mask[c:c + side, c:c + side] = False
    assert np.array_equal(out[mask], _a(image)[mask])


def test_random_patch_moves_with_the_sample_seed_and_keeps_its_size():
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    trig = RandomPatch(fraction=1 / 8)
    corners = set()
    for s in range(6):
        out = _a(trig.apply(white, np.random.default_rng(s))).sum(-1)
        ys, xs = np.nonzero(out == 0)
        assert len(ys) == 8 * 8 and ys.max() - ys.min() == 7 and xs.max() - xs.min() == 7
        corners.add((ys.min(), xs.min()))
    assert len(corners) > 1


def test_checkerboard_alternates_in_a_corner():
    grey = Image.new("RGB", (60, 60), (128, 128, 128))
    trig = CheckerboardPatch(fraction=1 / 5, cells=4)
    out = _a(trig.apply(grey, np.random.default_rng(1)))[..., 0]
    changed = np.argwhere(out != 128)
    (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
    assert (y1 - y0 + 1, x1 - x0 + 1) == (12, 12)
    assert y0 in (0, 48) and x0 in (0, 48)
    patch = out[y0:y1 + 1, x0:x1 + 1]
    assert patch[0, 0] == 255 and patch[0, 3] == 0 and patch[3, 3] == 255  # 3 px cells, alternating
    assert set(np.unique(patch)) == {0, 255}


def test_blend_mixes_one_fixed_pattern_at_alpha():
    trig = Blend(alpha=0.2, seed=3)
    one, two = _digit(0), _digit(1)
    p = trig.pattern(one.size)
    for image in (one, two):  # the same pattern whatever the image
        out = _a(trig.apply(image, np.random.default_rng(0)))
        expected = 0.8 * _a(image) + 0.2 * p
        assert np.abs(out - expected).max() <= 0.5 + 1e-9
    assert not np.array_equal(p, Blend(alpha=0.2, seed=4).pattern(one.size))


def test_sig_adds_the_same_horizontal_sinusoid_to_every_row():
    grey = Image.new("RGB", (64, 32), (128, 128, 128))
    trig = SIG(delta=20, frequency=6)
    diff = _a(trig.apply(grey, np.random.default_rng(0))) - 128
    assert (diff == diff[:1]).all()  # rows identical
    np.testing.assert_allclose(diff[0, :, 0], trig.signal(64), atol=0.5 + 1e-9)
    assert diff.max() == 20 and diff.min() == -20


def test_wanet_warps_smoothly_by_about_its_strength():
    trig = WaNet(grid=4, strength=1.0, seed=0)
    dy, dx = trig.field(64, 64)
    assert np.isclose(np.mean(np.abs(np.stack([dy, dx]))), 1.0)
    assert np.abs(np.diff(dx, axis=1)).max() < 0.5  # smooth: neighbours move alike
    flat = Image.new("RGB", (64, 64), (90, 140, 200))
    assert np.array_equal(_a(trig.apply(flat, np.random.default_rng(0))), _a(flat))  # a warp of a constant
    ramp = Image.fromarray(np.repeat(np.repeat((np.arange(64) * 4)[None, :, None], 64, 0), 3,
                                     2).astype(np.uint8))
    out = _a(trig.apply(ramp, np.random.default_rng(0)))[..., 0]
    # on a horizontal ramp of slope 4, the change is 4 x the horizontal offset (inside the clamped border)
    np.testing.assert_allclose(out[:, 8:56] - _a(ramp)[:, 8:56, 0], 4 * dx[:, 8:56], atol=0.51)
    assert not np.array_equal(dx, WaNet(seed=1).field(64, 64)[1])
