import pytest

from benchmarks.implant import main


@pytest.mark.parametrize("args, fragment", [
    (["--trigger", "nope"], "--trigger nope: unknown"),
    (["--trigger", "blend", "--set", "radius=2"], "Blend has no parameter 'radius'"),
    (["--trigger", "blend", "--set", "alpha=high"], "'high' is not a number"),
])
def test_bad_arguments_stop_before_any_training(args, fragment):
    with pytest.raises(SystemExit, match=fragment):
        main(args)
