"""statskit's own access tokens: an identity and scopes, signed with itsdangerous.

A token is ``URLSafeSerializer`` output (``<base64 JSON>.<base64 HMAC-SHA256>``) over
``{"sub": name, "scp": [sorted scopes], "exp": epoch seconds}`` (``exp`` absent: never expires),
signed with a fixed salt so a statskit token is useless anywhere else the same secret is used.

Several secrets give rotation: the FIRST signs, ALL verify. Deploy ``[new, old]``, let old
tokens age out or re-mint them, then drop ``old``.

    >>> signer = TokenSigner(["new-secret", "old-secret"])
    >>> token = signer.mint("grafana-panel", scopes=("write",), ttl=3600)
    >>> identity = signer.verify(token)
    >>> identity.name, identity.has("write"), identity.has("admin")
    ('grafana-panel', True, False)
    >>> TokenSigner(["old-secret"]).verify(TokenSigner(["old-secret"]).mint("svc")).name
    'svc'
"""
from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from itsdangerous import BadData, BadPayload, BadSignature, URLSafeSerializer

__all__ = [
    "SCOPES",
    "SALT",
    "TokenError",
    "MalformedToken",
    "InvalidSignature",
    "ExpiredToken",
    "NoSecretKey",
    "UnknownToken",
    "Identity",
    "TokenSigner",
    "validate_name",
    "normalize_scopes",
    "format_epoch",
]

#: Scopes a token may carry. ``admin`` does not imply the others: mint ``write,read,admin``.
SCOPES = ("write", "read", "admin")

#: itsdangerous salt: namespaces the signature, and versions the payload format.
SALT = "statskit.token.v1"

#: Longer strings are rejected before any HMAC work: our tokens are a few hundred characters,
#: and the verified-token cache must not be fillable with megabyte keys.
MAX_TOKEN_LENGTH = 2048

NAME_MAX_LENGTH = 128

NO_SECRET_MESSAGE = "no secret key configured: set STATSKIT_SECRET_KEY or [auth] secret_key"


class TokenError(Exception):
    """A token was refused. ``reason`` is a short code; ``str(exc)`` is for humans.

    Reasons: ``malformed``, ``signature``, ``expired``, ``no_secret``, ``unknown`` (a legacy
    token absent from the access file). Catch the subclasses to branch on one of them.
    """

    reason = "invalid"

    def __init__(self, message: str, reason: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class MalformedToken(TokenError):
    """Not something any signer could have produced (bad encoding, bad payload)."""

    reason = "malformed"


class InvalidSignature(TokenError):
    """Well-formed, but signed with another secret or altered since."""

    reason = "signature"


class ExpiredToken(TokenError):
    """Genuine, but past its ``exp``. ``expires`` holds that epoch time."""

    reason = "expired"

    def __init__(self, message: str, expires: Optional[float] = None) -> None:
        super().__init__(message)
        self.expires = expires


class NoSecretKey(TokenError):
    """The signer has no secret: a configuration problem, not the client's."""

    reason = "no_secret"


class UnknownToken(TokenError):
    """A legacy token (or its identity) that the access file does not know."""

    reason = "unknown"


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for.

    >>> Identity("bob", frozenset({"write"}), None).has("write")
    True
    """

    name: str
    scopes: frozenset[str]
    expires: Optional[float]
    legacy: bool = False

    def has(self, scope: str) -> bool:
        """True if the token grants ``scope`` (exact match: no scope implies another)."""
        return scope in self.scopes


def validate_name(name: Any) -> str:
    """``name`` if it is a usable identity (1-128 printable characters, no whitespace), else ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"identity name must be a string, not {type(name).__name__}")
    if not 1 <= len(name) <= NAME_MAX_LENGTH:
        raise ValueError(f"identity name must be 1-{NAME_MAX_LENGTH} characters, got {len(name)}")
    # isprintable() accepts " ", so whitespace needs its own check: names end up in log lines
    # and "key=value" output where a space would split them.
    if not name.isprintable() or any(ch.isspace() for ch in name):
        raise ValueError(f"identity name must be printable with no whitespace: {name!r}")
    return name


def normalize_scopes(scopes: Union[str, Iterable[str]]) -> frozenset[str]:
    """A frozenset of known scopes from ``("write", "read")`` or ``"write,read"``; ValueError otherwise."""
    if isinstance(scopes, str):
        # A bare string is a comma list: iterating it would give single characters.
        items = [s.strip() for s in scopes.split(",")]
    else:
        items = [s.strip() if isinstance(s, str) else s for s in scopes]
    items = [s for s in items if s != ""]
    unknown = [s for s in items if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(map(repr, unknown))}: use {', '.join(SCOPES)}")
    if not items:
        raise ValueError(f"a token needs at least one scope ({', '.join(SCOPES)})")
    return frozenset(items)


class _LRU:
    """A small thread-safe LRU map (gthread workers verify from several threads)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: "OrderedDict[str, Identity]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[Identity]:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: Identity) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class TokenSigner:
    """Mints and verifies statskit tokens with one or more secrets (the first signs, all verify).

    ``secrets`` is what ``[auth] secret_key`` parses to (a list); a single string counts as one
    secret (it is not split on commas). With no secret, ``mint``/``verify`` raise
    :class:`NoSecretKey`. ``clock`` is for tests; ``cache_size=0`` disables the cache.
    """

    def __init__(
        self,
        secrets: Union[str, bytes, Sequence[Union[str, bytes]]],
        *,
        cache_size: int = 4096,
        clock: Optional[Callable[[], float]] = None,
    ) -> None:
        if isinstance(secrets, (str, bytes)):
            secrets = [secrets]
        cleaned = []
        for secret in secrets:
            text = secret.decode("utf-8") if isinstance(secret, bytes) else str(secret)
            if text.strip():
                cleaned.append(text.strip())
        self.secrets: tuple = tuple(cleaned)
        self._clock = clock or time.time
        self._cache = _LRU(cache_size)
        self._serializer: Optional[URLSafeSerializer] = None
        if self.secrets:
            # itsdangerous signs with the LAST key of its list and verifies newest-first from the
            # end; statskit's convention is newest FIRST, so hand it the list reversed.
            self._serializer = URLSafeSerializer(
                list(reversed(self.secrets)),
                salt=SALT,
                # SHA-256 rather than itsdangerous' SHA-1 default; costs the same here.
                signer_kwargs={"digest_method": hashlib.sha256},
            )

    def _need_serializer(self) -> URLSafeSerializer:
        if self._serializer is None:
            raise NoSecretKey(NO_SECRET_MESSAGE)
        return self._serializer

    def mint(
        self,
        name: str,
        scopes: Union[str, Iterable[str]] = ("write",),
        ttl: Optional[float] = None,
    ) -> str:
        """A token for ``name`` with ``scopes``, expiring ``ttl`` seconds from now (None: never).

        ValueError for a bad name, an unknown scope or a non-positive ttl.
        """
        serializer = self._need_serializer()
        payload: dict = {"sub": validate_name(name), "scp": sorted(normalize_scopes(scopes))}
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
                raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
            # Millisecond precision keeps the token short and is far finer than any sane ttl.
            payload["exp"] = round(self._clock() + ttl, 3)
        return serializer.dumps(payload)

    def verify(self, token: str) -> Identity:
        """The :class:`Identity` a token carries, or :class:`TokenError` (malformed, signature, expired).

        Successful verifications are cached (LRU, keyed by the token string); a cached entry
        is still checked against its ``exp`` on every call.
        """
        serializer = self._need_serializer()
        if not isinstance(token, str):
            raise MalformedToken(f"malformed token: expected a string, not {type(token).__name__}")
        cached = self._cache.get(token)
        if cached is not None:
            self._check_expiry(cached.expires, token)
            return cached
        if not token:
            raise MalformedToken("malformed token: empty")
        if len(token) > MAX_TOKEN_LENGTH:
            raise MalformedToken(f"malformed token: longer than {MAX_TOKEN_LENGTH} characters")
        if "." not in token:
            # Every itsdangerous token has a "." before its signature; stats-service tokens never
            # do, so this rejects them without any HMAC work (callers then try the legacy file).
            raise MalformedToken("malformed token: not a statskit token (no signature separator)")
        try:
            payload = serializer.loads(token)
        except BadPayload as exc:
            raise MalformedToken(f"malformed token: undecodable payload ({exc.message})") from None
        except BadSignature:
            raise InvalidSignature(
                "bad token signature: signed with another secret, or altered"
            ) from None
        except BadData as exc:  # pragma: no cover - itsdangerous raises the two above for loads()
            raise MalformedToken(f"malformed token: {exc}") from None
        identity = self._identity_from_payload(payload)
        self._check_expiry(identity.expires, token)
        self._cache.put(token, identity)
        return identity

    def _check_expiry(self, expires: Optional[float], token: str) -> None:
        if expires is not None and expires <= self._clock():
            # Drop it so an expired token does not keep a cache slot warm.
            self._cache.discard(token)
            raise ExpiredToken(f"token expired at {format_epoch(expires)}", expires=expires)

    @staticmethod
    def _identity_from_payload(payload: Any) -> Identity:
        # The signature is valid, so a bad shape means another statskit version or a bug:
        # still refuse it rather than guess.
        if not isinstance(payload, dict):
            raise MalformedToken("malformed token: payload is not an object")
        try:
            name = validate_name(payload.get("sub"))
        except ValueError as exc:
            raise MalformedToken(f"malformed token: {exc}") from None
        scopes = payload.get("scp")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise MalformedToken("malformed token: scopes are not a list of strings")
        expires = payload.get("exp")
        if expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float))):
            raise MalformedToken("malformed token: exp is not a number")
        # Unknown scope names are kept, not refused: a newer statskit may mint scopes this
        # version does not know, and has() only ever answers for the scope asked about.
        return Identity(name=name, scopes=frozenset(scopes), expires=None if expires is None else float(expires))

    def cache_clear(self) -> None:
        """Forget every cached verification (tests, or after revoking a secret in place)."""
        self._cache.clear()


def format_epoch(epoch: float) -> str:
    """``2026-01-31T12:00:00Z`` for an epoch time (the raw number if the calendar cannot hold it)."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    except (OverflowError, OSError, ValueError):
        return repr(epoch)
