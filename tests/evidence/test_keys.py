import stat

from click.testing import CliRunner

from auditor.cli import cli
from auditor.evidence.keys import PRIVATE_NAME, PUBLIC_NAME, load_public_key, load_signer


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_matching_public_key(tmp_path):
    res = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path / "k")])
    assert res.exit_code == 0, res.output
    private, public = tmp_path / "k" / PRIVATE_NAME, tmp_path / "k" / PUBLIC_NAME
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    assert load_signer(private).public_key.keyid == load_public_key(public).keyid
    assert load_public_key(public).keyid in res.output


def test_keygen_never_overwrites_a_key(tmp_path):
    assert CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path)]).exit_code == 0
    before = (tmp_path / PRIVATE_NAME).read_bytes()
    res = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "never overwrites" in res.output
    assert (tmp_path / PRIVATE_NAME).read_bytes() == before


def test_a_file_that_is_not_a_key_is_a_one_line_input_error(tmp_path):
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    res = CliRunner().invoke(cli, ["verify", str(tmp_path), "--key", str(bad)])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and str(bad) in res.output and "Traceback" not in res.output
