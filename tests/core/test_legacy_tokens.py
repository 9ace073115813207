"""stats-service (apiaccesstoken/tokenlib) tokens: the spec's vectors, header extraction, the
expiry quirk, and stats-service access.json files."""
import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest
from falcon import testing

from statskit.config import load_settings
from statskit.legacy_tokens import (LEGACY_SCOPES, LegacyAccessFile, LegacyAccessFileError, add_legacy_token,
                                    derive_signing_key, extract_token, make_legacy_token, make_secret,
                                    token_from_authorization, verify_legacy)
from statskit.tokens import ExpiredToken, Identity, InvalidSignature, MalformedToken, TokenError, UnknownToken
from statskit_server import create_app

SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "spec"
VECTORS_FILE = SPEC / "legacy-token-vectors.json"

if not VECTORS_FILE.exists():  # pragma: no cover - the spec folder sits next to the repository
    pytest.skip(f"test vectors not found at {VECTORS_FILE}", allow_module_level=True)

VECTORS = json.loads(VECTORS_FILE.read_text())
BY_ID = {v["id"]: v for v in VECTORS["vectors"]}
T2 = BY_ID["T2"]


def resolved(vector: dict) -> tuple:
    """(token, secret) of a vector. T1 is not in the file: its placeholders stand for T2's pair."""
    token = T2["token"] if vector["token"] == "(T1 token)" else vector["token"]
    secret = T2["secret"] if vector["secret"] == "(T1 secret)" else vector["secret"]
    return token, secret


def test_every_vector_is_covered():
    assert set(BY_ID) == {"T2", "T3", "T4"}


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=[v["id"] for v in VECTORS["vectors"]])
def test_vectors(vector):
    token, secret = resolved(vector)
    expect = vector["expect"]
    if expect["valid"]:
        assert verify_legacy(token, secret) == expect["identity"]
    else:
        # "AccessTokenInvalid (signature)" -> reason "signature"
        reason = re.search(r"\((\w+)\)", expect["error"]).group(1)
        with pytest.raises(TokenError) as info:
            verify_legacy(token, secret)
        assert info.value.reason == reason


def test_t2_signing_key_is_hkdf_sha512_of_the_secret_text():
    # The secret is used as its UTF-8 text, not hex-decoded: hex-decoding must NOT verify.
    raw = base64.urlsafe_b64decode(T2["token"])
    payload, signature = raw[:-64], raw[-64:]
    assert payload == b'{"expires": 10, "salt": "09455f", "identity": "bob"}'
    import hmac
    import hashlib
    assert hmac.new(derive_signing_key(T2["secret"]), payload, hashlib.sha512).digest() == signature
    from statskit.legacy_tokens import _SIGNING_INFO, _hkdf_sha512
    hex_decoded_key = _hkdf_sha512(bytes.fromhex(T2["secret"]), _SIGNING_INFO)
    assert hmac.new(hex_decoded_key, payload, hashlib.sha512).digest() != signature


@pytest.mark.parametrize("case", VECTORS["header_extract_cases"], ids=lambda c: repr(c["header"]))
def test_header_extraction_matches_the_original(case):
    assert extract_token(case["header"]) == case["token"]


@pytest.mark.parametrize("header, original, statskit", [
    ("Token abc123", "abc123", "abc123"),
    ("Token    abc123", "abc123", "abc123"),
    ("abc123", "abc123", "abc123"),
    ("   abc123  ", "abc123", "abc123"),
    ("", "", ""),
    ("Bearer abc123", "Bearer abc123", "abc123"),
    ("bearer   abc123 ", "bearer   abc123", "abc123"),
    ("Token abc123  ", "abc123  ", "abc123"),  # the original keeps trailing blanks after "Token"
    ("Tokenabc123", "abc123", "abc123"),  # \s* matches nothing
    ("token abc123", "token abc123", "abc123"),  # statskit: schemes in any case (RFC 7235)
    ("  Token abc123", "Token abc123", "abc123"),  # the original's re.match needs "Token" at 0
])
def test_statskit_extraction_differs_only_where_documented(header, original, statskit):
    assert extract_token(header) == original
    assert token_from_authorization(header) == statskit


def test_extraction_of_real_tokens():
    assert extract_token("Token " + T2["token"]) == T2["token"]
    assert token_from_authorization("Bearer " + T2["token"]) == T2["token"]
    assert verify_legacy(token_from_authorization("Token " + T2["token"]), T2["secret"]) == "bob"


def test_make_legacy_token_round_trip_and_exact_format():
    secret = make_secret()
    token = make_legacy_token("alice", secret)
    assert verify_legacy(token, secret) == "alice"
    payload = base64.urlsafe_b64decode(token)[:-64]
    # json.dumps default separators and tokenlib's key order (salt appended last on Python 3).
    assert re.fullmatch(rb'\{"expires": 10, "identity": "alice", "salt": "[0-9a-f]{6}"\}', payload)
    assert token == base64.urlsafe_b64encode(base64.urlsafe_b64decode(token)).decode()
    with pytest.raises(InvalidSignature):
        verify_legacy(token, make_secret())


def test_two_tokens_for_the_same_identity_differ_by_salt():
    secret = make_secret()
    assert make_legacy_token("alice", secret) != make_legacy_token("alice", secret)


def test_expiry_quirk_timeout_5_is_dead_timeout_6_lives_forever():
    secret = make_secret()
    with pytest.raises(ExpiredToken) as info:
        verify_legacy(make_legacy_token("bob", secret, timeout=5), secret)
    assert info.value.reason == "expired"
    with pytest.raises(ExpiredToken):
        verify_legacy(make_legacy_token("bob", secret, timeout=-1), secret)
    assert verify_legacy(make_legacy_token("bob", secret, timeout=6), secret) == "bob"
    # "expires" is compared to a frozen now=5, never to the clock: 5.5 is still valid.
    assert verify_legacy(make_legacy_token("bob", secret, timeout=5.5), secret) == "bob"


def test_make_secret_is_128_hex_chars():
    secrets = {make_secret() for _ in range(5)}
    assert len(secrets) == 5
    assert all(re.fullmatch(r"[0-9a-f]{128}", s) for s in secrets)


@pytest.mark.parametrize("token, reason", [
    ("", "malformed"),
    ("some token I've just made up.", "malformed"),
    ("ünïcode", "malformed"),
    ("YWJj", "malformed"),  # valid base64, but shorter than a signature
    (T2["token"][:-8] + "AAAAAAA=", "signature"),
])
def test_malformed_and_tampered(token, reason):
    with pytest.raises(TokenError) as info:
        verify_legacy(token, T2["secret"])
    assert info.value.reason == reason


def _signed(payload: bytes, secret: str) -> str:
    import hashlib
    import hmac
    sig = hmac.new(derive_signing_key(secret), payload, hashlib.sha512).digest()
    return base64.urlsafe_b64encode(payload + sig).decode()


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'{"identity": "bob"}', b'{"expires": "10", "identity": "x"}',
                                     b'{"expires": 10}', b'{"expires": 10, "identity": ""}', b'{"expires": 10, "identity": 7}',
                                     b"\xff\xfe"])
def test_signed_but_unusable_payloads_are_malformed(payload):
    # The original crashed on several of these (KeyError/TypeError, a 500): now a clean refusal.
    secret = make_secret()
    with pytest.raises(MalformedToken):
        verify_legacy(_signed(payload, secret), secret)


# --- access.json -----------------------------------------------------------------------------

def write_access(path: Path, users) -> Path:
    path.write_text(json.dumps(users, indent=4))
    return path


@pytest.fixture
def access_file(tmp_path):
    alice_secret = make_secret()
    users = [
        {"id": "user_00ca4f6190b84f25827239233c4bcbaa", "username": "bob", "name": "Bob",
         "tokens": [{"access_token": T2["token"], "access_secret": T2["secret"]}]},
        # the shipped template's placeholder: ignored, not a token "" with secret ""
        {"id": "user_empty", "username": "statsbob", "tokens": [{"access_token": "", "access_secret": ""}]},
        {"id": "user_alice", "username": "alice", "tokens": [
            {"access_token": make_legacy_token("alice", alice_secret), "access_secret": alice_secret},
            # identity by user id, which the original's recover_user also accepted
            {"access_token": make_legacy_token("user_alice", alice_secret), "access_secret": alice_secret},
        ]},
    ]
    return write_access(tmp_path / "access.json", users), users


def test_access_file_verifies_its_tokens(access_file):
    path, users = access_file
    access = LegacyAccessFile(str(path))
    assert len(access) == 3
    assert access.verify(T2["token"]) == Identity(name="bob", scopes=frozenset({"write", "read"}), expires=None,
                                                  legacy=True)
    for pair in users[2]["tokens"]:
        identity = access.verify(pair["access_token"])
        assert identity.name == "alice" and identity.legacy and identity.has("write") and identity.has("read")
    assert LEGACY_SCOPES == frozenset({"write", "read"})


def test_access_file_refusals(access_file, tmp_path):
    path, users = access_file
    access = LegacyAccessFile(str(path))
    with pytest.raises(UnknownToken):
        access.verify("")
    with pytest.raises(UnknownToken):
        access.verify(make_legacy_token("bob", T2["secret"]))  # valid, but not listed
    # Listed with a wrong secret / naming a user the file does not have.
    secret = make_secret()
    ghost = make_legacy_token("ghost", secret)
    users.append({"id": "user_x", "username": "x", "tokens": [
        {"access_token": T2["token"], "access_secret": secret},
        {"access_token": ghost, "access_secret": secret},
    ]})
    access = LegacyAccessFile(str(write_access(tmp_path / "again.json", users)))
    with pytest.raises(InvalidSignature):  # the last entry for T2 wins, with the wrong secret
        access.verify(T2["token"])
    with pytest.raises(UnknownToken) as info:
        access.verify(ghost)
    assert "ghost" in str(info.value)


@pytest.mark.parametrize("content, message", [
    (None, "cannot read legacy access file"),
    ("{not json", "is not valid JSON"),
    ('{"id": "x"}', "must hold a JSON list"),
    ('["x"]', "entry 0 is not an object"),
    ('[{"tokens": []}]', "neither a 'username' nor an 'id'"),
    ('[{"username": "u", "tokens": {}}]', "'tokens' is not a list"),
    ('[{"username": "u", "tokens": [{"access_token": 1, "access_secret": 2}]}]', "must be strings"),
])
def test_bad_access_file_fails_at_load_naming_the_path(tmp_path, content, message):
    path = tmp_path / "access.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LegacyAccessFileError) as info:
        LegacyAccessFile(str(path))
    assert str(path) in str(info.value)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # a ConfigError, like every bad setting


def test_add_legacy_token_creates_then_updates(tmp_path):
    path = str(tmp_path / "sub" / "access.json")
    token = add_legacy_token(path, "bob")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    users = json.loads(Path(path).read_text())
    assert len(users) == 1 and users[0]["username"] == "bob"
    assert re.fullmatch(r"user_[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", users[0]["id"])  # str(uuid4()), as accesshelper
    assert users[0]["tokens"] == [{"access_token": token, "access_secret": users[0]["tokens"][0]["access_secret"]}]
    assert Path(path).read_text().startswith("[\n    {")  # indent 4, like accesshelper
    assert verify_legacy(token, users[0]["tokens"][0]["access_secret"]) == "bob"

    second = add_legacy_token(path, "bob")
    third = add_legacy_token(path, "carol")
    users = json.loads(Path(path).read_text())
    assert [u["username"] for u in users] == ["bob", "carol"]
    assert [t["access_token"] for t in users[0]["tokens"]] == [token, second]
    access = LegacyAccessFile(path)
    assert {access.verify(t).name for t in (token, second, third)} == {"bob", "carol"}
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".access-")]


def test_add_legacy_token_replaces_the_template_placeholder(tmp_path):
    path = write_access(tmp_path / "access.json", [
        {"username": "statsbob", "tokens": [{"access_token": "", "access_secret": ""}],
         "id": "user_00ca4f6190b84f25827239233c4bcbaa", "name": "Stats User"}])
    token = add_legacy_token(str(path), "statsbob")
    users = json.loads(path.read_text())
    assert users[0]["id"] == "user_00ca4f6190b84f25827239233c4bcbaa" and users[0]["name"] == "Stats User"
    assert [t["access_token"] for t in users[0]["tokens"]] == [token]
    assert LegacyAccessFile(str(path)).verify(token).name == "statsbob"


def test_add_legacy_token_refuses_a_broken_file(tmp_path):
    path = tmp_path / "access.json"
    path.write_text("oops")
    with pytest.raises(LegacyAccessFileError):
        add_legacy_token(str(path), "bob")
    assert path.read_text() == "oops"


def test_stats_service_clients_keep_working_against_the_server(access_file, tmp_path):
    """An unchanged stats-client, with its access.json token, logs and reads through statskit;
    the header forms stats-service took all work, and a token not in the file is a 401."""
    path, _ = access_file
    settings = load_settings(env={"STATS_ACCESS_IDENTITIES": str(path)}, overrides={
        "server.data_dir": str(tmp_path), "auth.secret_key": ["new-secret"], "sinks.enabled": ["sqlite"]})
    app = create_app(settings)
    client = testing.TestClient(app)
    for header in (f"Token {T2['token']}", f"Token{T2['token']}", f"Bearer {T2['token']}", T2["token"]):
        resp = client.simulate_post("/log/event", json={"uid": "u", "event": "legacy"}, headers={"Authorization": header})
        assert resp.status_code == 200 and resp.json.startswith("entry_"), header
        got = client.simulate_get(f"/log/event/{resp.json}", headers={"Authorization": header})
        assert got.status_code == 200 and got.json["event"] == "legacy"
    forged = make_legacy_token("bob", make_secret())
    resp = client.simulate_post("/log/event", json={"uid": "u", "event": "x"}, headers={"Authorization": f"Token {forged}"})
    assert resp.status_code == 401 and resp.json["error"] == "unauthorized"
    app.statskit.close(1.0)


# --------------------------------------------------------------------------- STATS_ACCESS_SECRET / _TOKEN

def test_the_environment_pair_of_stats_service_works_through_the_server(access_file, tmp_path):
    """stats-service's STATS_ACCESS_SECRET + STATS_ACCESS_TOKEN (one user, statsbob) instead of an
    access file: its token is accepted (the original checked it against itself and refused it),
    next to the access file's when both are set."""
    path, _ = access_file
    secret = make_secret()
    token = make_legacy_token("statsbob", secret)
    for extra in ({}, {"STATS_ACCESS_IDENTITIES": str(path)}):
        settings = load_settings(env={"STATS_ACCESS_SECRET": secret, "STATS_ACCESS_TOKEN": token, **extra}, overrides={
            "server.data_dir": str(tmp_path), "auth.secret_key": ["new-secret"], "sinks.enabled": ["sqlite"]})
        assert app_identity(settings, token).name == "statsbob"
        app = create_app(settings)
        client = testing.TestClient(app, headers={"Authorization": f"Token {token}"})
        event_id = client.simulate_post("/log/event", json={"uid": "u", "event": "env-pair"}).json
        assert client.simulate_get(f"/log/event/{event_id}").json["event"] == "env-pair"
        other = make_legacy_token("statsbob", make_secret())
        assert client.simulate_get("/ping").status_code == 200
        assert client.simulate_post("/log/event", json={"uid": "u", "event": "x"},
                                    headers={"Authorization": f"Token {other}"}).status_code == 401
        bob = client.simulate_post("/log/event", json={"uid": "u", "event": "x"}, headers={"Authorization": f"Token {T2['token']}"})
        assert bob.status_code == (200 if extra else 401)
        app.statskit.close(1.0)


def app_identity(settings, token):
    from statskit_server.auth import Authenticator

    return Authenticator.from_settings(settings).verify(token)


@pytest.mark.parametrize("env, words", [
    ({"STATS_ACCESS_SECRET": "s" * 128}, "STATS_ACCESS_TOKEN"),
    ({"STATS_ACCESS_TOKEN": T2["token"]}, "STATS_ACCESS_SECRET"),
    ({"STATS_ACCESS_TOKEN": T2["token"], "STATS_ACCESS_SECRET": T2["token"]}, "does not verify"),  # the original's bug
    ({"STATS_ACCESS_TOKEN": make_legacy_token("statsbob", T2["secret"], timeout=5), "STATS_ACCESS_SECRET": T2["secret"]},
     "does not verify"),  # a dead token (the expiry quirk)
])
def test_a_broken_environment_pair_fails_at_start_saying_why(tmp_path, env, words):
    settings = load_settings(env=env, overrides={"server.data_dir": str(tmp_path), "auth.secret_key": ["k"]})
    with pytest.raises(LegacyAccessFileError, match=words):
        app_identity(settings, T2["token"])
