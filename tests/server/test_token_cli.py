"""``statskit-token``: mint/verify/legacy-token in-process and through ``python -m``."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from statskit.legacy_tokens import LegacyAccessFile, make_legacy_token, make_secret
from statskit.tokens import TokenSigner
from statskit_server.token_cli import main, parse_ttl

ROOT = Path(__file__).resolve().parents[2]
ENV_VARS = ("STATSKIT_SECRET_KEY", "STATSKIT_CONFIG", "STATS_ACCESS_IDENTITIES", "STATSKIT_DATA_DIR")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    # The default data dir is ./statskit-data: keep any real secret.key out of reach.
    monkeypatch.chdir(tmp_path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_mint_prints_the_token_alone(capsys):
    code, out, err = run(capsys, "mint", "grafana-panel", "--secret-key", "s1")
    assert code == 0 and err == ""
    token = out[:-1]
    assert out == token + "\n" and token.strip() == token and " " not in token
    identity = TokenSigner(["s1"]).verify(token)
    assert identity.name == "grafana-panel" and identity.scopes == frozenset({"write"}) and identity.expires is None


def test_mint_scopes_and_ttl(capsys):
    before = time.time()
    code, out, _ = run(capsys, "mint", "svc", "--scopes", "write,read", "--ttl", "30d", "--secret-key", "s1")
    identity = TokenSigner(["s1"]).verify(out.strip())
    assert code == 0 and identity.scopes == frozenset({"write", "read"})
    assert before + 30 * 86400 - 1 <= identity.expires <= time.time() + 30 * 86400 + 1
    code, out, _ = run(capsys, "mint", "svc", "--ttl", "3600", "--secret-key", "s1")
    assert abs(TokenSigner(["s1"]).verify(out.strip()).expires - (time.time() + 3600)) < 5


@pytest.mark.parametrize("text, seconds", [("3600", 3600), ("30d", 30 * 86400), ("12h", 43200), ("1d12h", 129600),
                                           ("2w", 1209600), ("90m", 5400), ("1.5", 1.5)])
def test_parse_ttl(text, seconds):
    assert parse_ttl(text) == seconds


def test_verify_prints_identity_scopes_expiry(capsys):
    token = TokenSigner(["s1"]).mint("svc", ["write", "read"])
    code, out, err = run(capsys, "verify", token, "--secret-key", "s1")
    assert (code, out, err) == (0, "identity=svc scopes=read,write expires=never\n", "")
    expiring = TokenSigner(["s1"], clock=lambda: 4_000_000_000.0).mint("svc", "admin", ttl=3600)
    code, out, _ = run(capsys, "verify", expiring, "--secret-key", "s1")
    assert out == "identity=svc scopes=admin expires=2096-10-02T08:06:40Z\n"
    # A pasted header value works too.
    assert run(capsys, "verify", "Bearer " + token, "--secret-key", "s1")[0] == 0


@pytest.mark.parametrize("make_token, message", [
    (lambda: TokenSigner(["other"]).mint("svc"), "bad token signature"),
    (lambda: "garbage", "malformed token"),
    (lambda: TokenSigner(["s1"], clock=lambda: 1000.0).mint("svc", ttl=1), "token expired at 1970-01-01T00:16:41Z"),
])
def test_verify_failure_exits_1_with_the_reason_on_stderr(capsys, make_token, message):
    code, out, err = run(capsys, "verify", make_token(), "--secret-key", "s1")
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message in err


def test_rotation_through_the_cli(capsys):
    old = TokenSigner(["old"]).mint("svc")
    assert run(capsys, "verify", old, "--secret-key", "new,old")[0] == 0
    _, out, _ = run(capsys, "mint", "svc", "--secret-key", "new,old")
    assert TokenSigner(["new"]).verify(out.strip()).name == "svc"


def test_secret_resolution_order(capsys, monkeypatch, tmp_path):
    ini = tmp_path / "statskit.ini"
    ini.write_text("[auth]\nsecret_key = ini-secret, older-ini-secret\n")

    def minted_with(*argv):
        code, out, err = run(capsys, "mint", "svc", *argv)
        assert code == 0, err
        for secret in ("flag-secret", "env-secret", "ini-secret", "file-secret"):
            try:
                TokenSigner([secret]).verify(out.strip())
                return secret
            except Exception:
                pass
        raise AssertionError("minted with an unexpected secret")

    assert minted_with("--config", str(ini)) == "ini-secret"
    monkeypatch.setenv("STATSKIT_CONFIG", str(ini))
    assert minted_with() == "ini-secret"
    monkeypatch.setenv("STATSKIT_SECRET_KEY", "env-secret")
    assert minted_with("--config", str(ini)) == "env-secret"
    assert minted_with("--config", str(ini), "--secret-key", "flag-secret") == "flag-secret"


def test_secret_from_the_servers_data_dir(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret.key").write_text("file-secret\n")
    code, out, _ = run(capsys, "mint", "svc", "--data-dir", str(data))
    assert code == 0 and TokenSigner(["file-secret"]).verify(out.strip()).name == "svc"
    # ... and the default ./statskit-data, as statskit-server uses with no configuration.
    (tmp_path / "statskit-data").mkdir()
    (tmp_path / "statskit-data" / "secret.key").write_text("default-secret\n")
    code, out, _ = run(capsys, "mint", "svc")
    assert code == 0 and TokenSigner(["default-secret"]).verify(out.strip()).name == "svc"


@pytest.mark.parametrize("argv", [["mint", "svc"], ["verify", "a.b"]])
def test_missing_secret_is_a_clear_error(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert "error: no secret key configured: set STATSKIT_SECRET_KEY or [auth] secret_key" in err


def test_unreadable_config_exits_1(capsys, tmp_path):
    code, out, err = run(capsys, "mint", "svc", "--config", str(tmp_path / "missing.ini"))
    assert code == 1 and out == "" and "missing.ini" in err


@pytest.mark.parametrize("argv", [
    [],
    ["mint"],
    ["mint", "svc", "--scopes", "write,delete", "--secret-key", "s"],
    ["mint", "has space", "--secret-key", "s"],
    ["mint", "svc", "--ttl", "soon", "--secret-key", "s"],
    ["mint", "svc", "--ttl", "0", "--secret-key", "s"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().out == ""


def test_legacy_token_creates_an_access_json_entry(capsys, monkeypatch, tmp_path):
    path = tmp_path / "access.json"
    code, out, err = run(capsys, "legacy-token", "bob", "--access-json", str(path))
    token = out.strip()
    assert code == 0 and out == token + "\n" and str(path) in err
    users = json.loads(path.read_text())
    assert users[0]["username"] == "bob" and re.fullmatch(r"user_[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", users[0]["id"])
    # how to use it, on stderr (stdout stays the token alone)
    assert "Authorization: Token" in err and f"STATS_ACCESS_IDENTITIES={path}" in err
    assert LegacyAccessFile(str(path)).verify(token).name == "bob"

    # verify through the access file: no statskit secret needed
    code, out, err = run(capsys, "verify", token, "--access-json", str(path))
    assert (code, out) == (0, "identity=bob scopes=read,write expires=never legacy=true\n")
    # with a secret configured the legacy file is still consulted, named by the env variable
    monkeypatch.setenv("STATS_ACCESS_IDENTITIES", str(path))
    code, out, _ = run(capsys, "verify", "Token " + token, "--secret-key", "s1")
    assert (code, out) == (0, "identity=bob scopes=read,write expires=never legacy=true\n")
    _, second, _ = run(capsys, "legacy-token", "bob")  # default path from the env variable
    assert [t["access_token"] for t in json.loads(path.read_text())[0]["tokens"]] == [token, second.strip()]


def test_verify_legacy_failures(capsys, tmp_path):
    path = tmp_path / "access.json"
    run(capsys, "legacy-token", "bob", "--access-json", str(path))
    unlisted = make_legacy_token("bob", make_secret())
    code, out, err = run(capsys, "verify", unlisted, "--access-json", str(path))
    assert code == 1 and out == "" and "unknown legacy token" in err
    code, _, err = run(capsys, "verify", TokenSigner(["s1"]).mint("svc"), "--access-json", str(path))
    assert code == 1 and "no secret key configured" in err
    code, _, err = run(capsys, "verify", unlisted, "--access-json", str(tmp_path / "nope.json"))
    assert code == 1 and "nope.json" in err


# --- as a real process -------------------------------------------------------------------------

def _python(args, env_extra=None, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(env_extra or {})
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env, timeout=60, **kwargs)


def test_python_dash_m_mint_and_verify(tmp_path):
    env = {"STATSKIT_SECRET_KEY": "proc-secret"}
    minted = _python(["-m", "statskit_server.token_cli", "mint", "svc", "--scopes", "read"], env, cwd=tmp_path)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert minted.stdout == token + "\n" and minted.stderr == ""
    assert TokenSigner(["proc-secret"]).verify(token).scopes == frozenset({"read"})

    ok = _python(["-m", "statskit_server.token_cli", "verify", token], env, cwd=tmp_path)
    assert (ok.returncode, ok.stdout) == (0, "identity=svc scopes=read expires=never\n")
    bad = _python(["-m", "statskit_server.token_cli", "verify", token, "--secret-key", "wrong"], env, cwd=tmp_path)
    assert bad.returncode == 1 and bad.stdout == "" and bad.stderr.startswith("error: bad token signature")
    usage = _python(["-m", "statskit_server.token_cli", "mint"], env, cwd=tmp_path)
    assert usage.returncode == 2


def test_token_cli_itself_imports_neither_falcon_nor_gunicorn(tmp_path):
    # Loaded as a file, bypassing statskit_server/__init__ (which mounts the Falcon app): what
    # this module pulls in on its own.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('token_cli', {str(ROOT / 'statskit_server' / 'token_cli.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('falcon', 'gunicorn', 'statskit_server')))\n"
    )
    result = _python(["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
