"""statskit's own tokens: round trip, scopes, expiry, rotation, refusals and the verified-token cache."""
import threading

import pytest
from itsdangerous import URLSafeSerializer

from statskit.tokens import (SALT, SCOPES, ExpiredToken, Identity, InvalidSignature, MalformedToken, NoSecretKey,
                             TokenError, TokenSigner)


class FakeClock:
    """A settable time.time() so expiry is tested without sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def payload_of(token: str) -> dict:
    # The payload is signed, not encrypted: anyone can read it (so never put secrets in it).
    return URLSafeSerializer("irrelevant").loads_unsafe(token)[1]


def test_round_trip_defaults_to_write_scope_and_no_expiry():
    signer = TokenSigner(["s3cret"])
    identity = signer.verify(signer.mint("grafana-panel"))
    assert identity == Identity(name="grafana-panel", scopes=frozenset({"write"}), expires=None, legacy=False)
    assert identity.has("write") and not identity.has("read") and not identity.has("admin")


def test_payload_format_is_sub_sorted_scp_and_exp():
    clock = FakeClock(1000.0)
    signer = TokenSigner(["s3cret"], clock=clock)
    assert payload_of(signer.mint("svc", ["write", "read"], ttl=60)) == {"sub": "svc", "scp": ["read", "write"],
                                                                          "exp": 1060.0}
    assert "exp" not in payload_of(signer.mint("svc"))


@pytest.mark.parametrize("scopes, expected", [
    (("write", "read"), {"write", "read"}),
    (["admin"], {"admin"}),
    ("write,read", {"write", "read"}),  # a comma string, not an iterable of characters
    (" read , admin ", {"read", "admin"}),
    (SCOPES, set(SCOPES)),
])
def test_scopes(scopes, expected):
    signer = TokenSigner(["s3cret"])
    identity = signer.verify(signer.mint("svc", scopes))
    assert identity.scopes == frozenset(expected)
    assert all(identity.has(s) for s in expected)


@pytest.mark.parametrize("scopes", [("write", "delete"), "wrte", (), "", ["Write"]])
def test_unknown_or_no_scope_is_a_value_error(scopes):
    with pytest.raises(ValueError):
        TokenSigner(["s3cret"]).mint("svc", scopes)


@pytest.mark.parametrize("name", ["", "x" * 129, "has space", "tab\there", "new\nline", "bell\x07", 42, None])
def test_bad_identity_names_are_refused(name):
    with pytest.raises(ValueError):
        TokenSigner(["s3cret"]).mint(name)


@pytest.mark.parametrize("name", ["a", "x" * 128, "user@example.org", "système-01", "svc:grafana/panel"])
def test_good_identity_names(name):
    signer = TokenSigner(["s3cret"])
    assert signer.verify(signer.mint(name)).name == name


@pytest.mark.parametrize("ttl", [0, -5, float("inf"), float("nan"), "60", True])
def test_bad_ttl_is_a_value_error(ttl):
    with pytest.raises(ValueError):
        TokenSigner(["s3cret"]).mint("svc", ttl=ttl)


def test_expiry_uses_the_clock_and_expires_at_exactly_exp():
    clock = FakeClock(1000.0)
    signer = TokenSigner(["s3cret"], clock=clock, cache_size=0)
    token = signer.mint("svc", ttl=10)
    assert signer.verify(token).expires == 1010.0
    clock.now = 1009.999
    assert signer.verify(token).name == "svc"
    clock.now = 1010.0
    with pytest.raises(ExpiredToken) as info:
        signer.verify(token)
    assert info.value.reason == "expired" and info.value.expires == 1010.0
    assert "expired at 1970-01-01T00:16:50Z" in str(info.value)


def test_expiry_with_the_real_clock_and_a_short_ttl():
    import time
    signer = TokenSigner(["s3cret"])
    token = signer.mint("svc", ttl=0.05)
    assert signer.verify(token).name == "svc"
    time.sleep(0.06)
    with pytest.raises(ExpiredToken):
        signer.verify(token)


def test_cached_entry_still_honours_exp():
    clock = FakeClock(1000.0)
    signer = TokenSigner(["s3cret"], clock=clock)
    token = signer.mint("svc", ttl=10)
    signer.verify(token)
    assert len(signer._cache) == 1
    clock.now = 1005.0
    assert signer.verify(token).name == "svc"  # from the cache
    clock.now = 1010.0
    with pytest.raises(ExpiredToken):
        signer.verify(token)
    assert len(signer._cache) == 0  # an expired entry gives its slot back
    with pytest.raises(ExpiredToken):
        signer.verify(token)


def test_cache_answers_without_checking_the_signature_again(monkeypatch):
    signer = TokenSigner(["s3cret"])
    token = signer.mint("svc")
    first = signer.verify(token)

    def boom(*args, **kwargs):
        raise AssertionError("signature checked again")

    monkeypatch.setattr(signer._serializer, "loads", boom)
    assert signer.verify(token) is first
    with pytest.raises(AssertionError):  # an uncached token does go through loads()
        signer.verify(signer.mint("other"))


def test_cache_is_bounded_lru_and_only_holds_successes():
    signer = TokenSigner(["s3cret"], cache_size=3)
    tokens = [signer.mint(f"svc{i}") for i in range(5)]
    for token in tokens[:3]:
        signer.verify(token)
    signer.verify(tokens[0])  # most recently used now: tokens[1] is the oldest
    signer.verify(tokens[3])
    assert len(signer._cache) == 3
    assert signer._cache.get(tokens[1]) is None
    assert signer._cache.get(tokens[0]) is not None
    for bad in ("nope", tokens[4] + "x", TokenSigner(["other"]).mint("svc")):
        with pytest.raises(TokenError):
            signer.verify(bad)
    assert len(signer._cache) == 3
    signer.cache_clear()
    assert len(signer._cache) == 0


def test_cache_size_zero_disables_it():
    signer = TokenSigner(["s3cret"], cache_size=0)
    signer.verify(signer.mint("svc"))
    assert len(signer._cache) == 0


def test_rotation_first_signs_all_verify():
    old_token = TokenSigner(["old"]).mint("svc")
    rotated = TokenSigner(["new", "old"])
    assert rotated.verify(old_token).name == "svc"
    new_token = rotated.mint("svc2")
    assert TokenSigner(["new"]).verify(new_token).name == "svc2"
    with pytest.raises(InvalidSignature):
        TokenSigner(["old"]).verify(new_token)
    # Once "old" is dropped, its tokens stop working.
    with pytest.raises(InvalidSignature):
        TokenSigner(["new"]).verify(old_token)


def test_wrong_secret_fails_with_signature_reason():
    token = TokenSigner(["right"]).mint("svc")
    with pytest.raises(InvalidSignature) as info:
        TokenSigner(["wrong"]).verify(token)
    assert info.value.reason == "signature"
    assert isinstance(info.value, TokenError)


def test_same_secret_but_another_salt_does_not_verify():
    # A signature made elsewhere with the same secret (e.g. a session cookie) is not a token.
    forged = URLSafeSerializer("s3cret").dumps({"sub": "svc", "scp": ["admin"]})
    with pytest.raises(InvalidSignature):
        TokenSigner(["s3cret"]).verify(forged)
    assert SALT == "statskit.token.v1"


def _flip(ch: str) -> str:
    return "A" if ch != "A" else "B"


def test_tampered_token_fails():
    signer = TokenSigner(["s3cret"])
    token = signer.mint("svc", ["read"])
    payload, sig = token.rsplit(".", 1)
    # Grant ourselves admin: re-encode a payload with the same signature.
    forged_payload = URLSafeSerializer("x").dump_payload({"sub": "svc", "scp": ["admin"]}).decode()
    for bad in (forged_payload + "." + sig,
                _flip(payload[0]) + payload[1:] + "." + sig,
                payload + "." + _flip(sig[0]) + sig[1:],
                payload + "." + sig[:-2]):
        with pytest.raises(InvalidSignature):
            signer.verify(bad)
    assert signer.verify(token).scopes == frozenset({"read"})


@pytest.mark.parametrize("token", [
    "",
    "no-separator-here",
    "x" * 5000 + ".sig",
    # a stats-service token: refused without HMAC work, so the legacy file gets its turn
    "eyJleHBpcmVzIjogMTAsICJzYWx0IjogIjA5NDU1ZiIsICJpZGVudGl0eSI6ICJib2Iifa3w0hzmNrThx3-PUlyidFWYw1Bx00OXdk2I"
    "q4b48fEF0Ts3nLOliryX-4-wxLgmo5PRyivKNrAFvGhsaWq3yL8=",
    None,
    b"bytes.token",
])
def test_malformed_tokens(token):
    with pytest.raises(MalformedToken) as info:
        TokenSigner(["s3cret"]).verify(token)
    assert info.value.reason == "malformed"


def test_signed_but_invalid_payload_is_malformed():
    serializer = URLSafeSerializer(["s3cret"], salt=SALT, signer_kwargs={"digest_method": __import__("hashlib").sha256})
    signer = TokenSigner(["s3cret"])
    for payload in ([1, 2], {"scp": ["write"]}, {"sub": "a b", "scp": []}, {"sub": "a", "scp": "write"},
                    {"sub": "a", "scp": [], "exp": "soon"}):
        with pytest.raises(MalformedToken):
            signer.verify(serializer.dumps(payload))


@pytest.mark.parametrize("secrets", [[], [""], ["  "], ()])
def test_no_secret_is_a_clear_token_error_on_use(secrets):
    signer = TokenSigner(secrets)
    for call in (lambda: signer.mint("svc"), lambda: signer.verify("a.b")):
        with pytest.raises(NoSecretKey) as info:
            call()
        assert info.value.reason == "no_secret"
        assert str(info.value) == "no secret key configured: set STATSKIT_SECRET_KEY or [auth] secret_key"


def test_a_single_string_secret_is_one_secret_not_characters():
    token = TokenSigner("abc").mint("svc")
    assert TokenSigner(["abc"]).verify(token).name == "svc"
    with pytest.raises(InvalidSignature):
        TokenSigner(["a"]).verify(token)


def test_identity_is_frozen_and_hashable():
    identity = Identity("bob", frozenset({"read"}), None)
    with pytest.raises(Exception):
        identity.name = "eve"  # type: ignore[misc]
    assert {identity: 1}[Identity("bob", frozenset({"read"}), None)] == 1


def test_verify_from_many_threads():
    signer = TokenSigner(["s3cret"], cache_size=8)
    tokens = [signer.mint(f"svc{i}") for i in range(32)]
    errors = []

    def work(offset):
        try:
            for round_ in range(20):
                for i, token in enumerate(tokens):
                    assert signer.verify(tokens[(i + offset) % len(tokens)]).name == f"svc{(i + offset) % len(tokens)}"
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(signer._cache) <= 8
