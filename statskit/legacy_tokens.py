"""Compatibility with stats-service access tokens (apiaccesstoken over Mozilla's tokenlib).

The scheme, reproduced byte for byte with the standard library:

- signing key = HKDF-SHA512(IKM = secret as UTF-8 text (not hex-decoded), salt = 64 zero bytes,
  info = ``b"services.mozilla.com/tokenlib/v1/signing"``, L = 64);
- payload = ``json.dumps({"expires": timeout, "identity": name, "salt": <6 hex chars>})`` with the
  default separators;
- token = ``urlsafe_b64encode(payload + HMAC-SHA512(key, payload))``.

Each token has its own secret, listed next to it in a stats-service ``access.json``::

    [{"id": "user_<hex>", "username": "bob", "tokens": [{"access_token": "...", "access_secret": "..."}]}]

Usage:

    >>> secret = make_secret()
    >>> token = make_legacy_token("bob", secret)
    >>> verify_legacy(token, secret)
    'bob'
    >>> extract_token("Token " + token) == token
    True
    >>> access = LegacyAccessFile("/data/access.json")      # doctest: +SKIP
    >>> access.verify(token_from_authorization(header)).name  # doctest: +SKIP
    'bob'
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets as _secrets
from typing import Any, Dict, List, Optional, Sequence, Tuple

from statskit.config import ConfigError

# TokenError is re-exported: callers of this module need no second import to catch it.
from statskit.tokens import (
    ExpiredToken,
    Identity,
    InvalidSignature,
    MalformedToken,
    TokenError,
    UnknownToken,
)

__all__ = [
    "LEGACY_SCOPES",
    "TokenError",
    "LegacyAccessFileError",
    "LegacyAccessFile",
    "environment_user",
    "derive_signing_key",
    "verify_legacy",
    "make_legacy_token",
    "make_secret",
    "extract_token",
    "token_from_authorization",
]

log = logging.getLogger("statskit.legacy_tokens")

_HASH = hashlib.sha512
_DIGEST_SIZE = 64
_SIGNING_INFO = b"services.mozilla.com/tokenlib/v1/signing"

#: apiaccesstoken verifies with a frozen clock: ``tokenlib.parse_token(token, now=5)``.
LEGACY_NOW = 5

#: What a stats-service token may do in statskit: everything the old service allowed (post and read events).
LEGACY_SCOPES = frozenset({"write", "read"})

# apiaccesstoken's TokenMiddleware.WITHTOKEN_RE, applied with re.match (anchored at the start only).
_WITH_TOKEN = re.compile(r"(Token\s*)(.*)")
_BEARER = re.compile(r"(?:Bearer|Token)\s+(.*)", re.IGNORECASE)  # RFC 7235: schemes are case-insensitive


def _hkdf_sha512(ikm: bytes, info: bytes, length: int = _DIGEST_SIZE, salt: Optional[bytes] = None) -> bytes:
    """RFC 5869 HKDF with SHA-512 (tokenlib's ``HKDF`` with ``hashmod=sha512``)."""
    if salt is None:
        salt = b"\x00" * _DIGEST_SIZE  # RFC 5869: absent salt = HashLen zero bytes
    prk = hmac.new(salt, ikm, _HASH).digest()
    blocks, previous = [], b""
    for counter in range(1, -(-length // _DIGEST_SIZE) + 1):
        previous = hmac.new(prk, previous + info + bytes((counter,)), _HASH).digest()
        blocks.append(previous)
    return b"".join(blocks)[:length]


def derive_signing_key(secret: str) -> bytes:
    """The 64-byte HMAC key tokenlib derives from an access secret (secret used as UTF-8 text)."""
    return _hkdf_sha512(secret.encode("utf-8"), _SIGNING_INFO)


def _sign(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, _HASH).digest()


def _verify_with_key(token: str, key: bytes) -> dict:
    """The payload of ``token`` checked against ``key``, exactly as tokenlib + apiaccesstoken do."""
    if not isinstance(token, str) or not token:
        raise MalformedToken("malformed legacy token: empty")
    try:
        # Deliberately the lenient decoder, like tokenlib: it skips characters outside the
        # alphabet, so every token the original accepted is accepted here too.
        decoded = base64.urlsafe_b64decode(token.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise MalformedToken("malformed legacy token: not URL-safe base64") from None
    if len(decoded) <= _DIGEST_SIZE:
        # tokenlib would report a bad signature here (the "signature" is the whole token);
        # "malformed" is the truth: there is no payload at all.
        raise MalformedToken("malformed legacy token: too short to hold a payload and signature")
    payload, signature = decoded[:-_DIGEST_SIZE], decoded[-_DIGEST_SIZE:]
    if not hmac.compare_digest(signature, _sign(key, payload)):
        raise InvalidSignature("bad legacy token signature: wrong access secret, or altered token")
    # Only parse after the signature matched (tokenlib's order): unsigned JSON is never parsed.
    try:
        data = json.loads(payload.decode("utf-8"))
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        raise MalformedToken("malformed legacy token: payload is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedToken("malformed legacy token: payload is not an object")
    expires = data.get("expires")
    if isinstance(expires, bool) or not isinstance(expires, (int, float)):
        # The original crashed here (KeyError/TypeError, a 500); a refusal is what it meant.
        raise MalformedToken("malformed legacy token: no numeric 'expires'")
    # The original's quirk, kept on purpose: apiaccesstoken calls parse_token(now=5) instead of
    # using the clock, and tokenlib refuses "expires <= now". So "expires" is not a date at all:
    # tokens minted with timeout > 5 (the default is 10) never expire, and timeout <= 5 tokens
    # are born invalid. Checking real time would lock out every existing client.
    if expires <= LEGACY_NOW:
        raise ExpiredToken(
            f"legacy token expired: expires={expires!r} <= {LEGACY_NOW} (stats-service rule)", expires=None
        )
    return data


def verify_legacy(token: str, secret: str) -> str:
    """The identity in a stats-service token, checked with its access ``secret``; TokenError otherwise."""
    data = _verify_with_key(token, derive_signing_key(secret))
    identity = data.get("identity")
    # The original 403s on an empty identity ("if not identifier"); a non-string never came
    # out of its tools.
    if not isinstance(identity, str) or not identity:
        raise MalformedToken("malformed legacy token: no identity")
    return identity


def make_legacy_token(identity: str, secret: str, timeout: float = 10) -> str:
    """A token stats-service accepts for ``identity`` (timeout > 5, as explained above, or it is dead)."""
    # Same dict building as apiaccesstoken + tokenlib on Python 3: {"expires", "identity"} then
    # tokenlib appends "salt" = hexlify(os.urandom(3)).
    data = {"expires": timeout, "identity": identity}
    data["salt"] = binascii.hexlify(os.urandom(3)).decode("ascii")
    payload = json.dumps(data).encode("utf-8")
    return base64.urlsafe_b64encode(payload + _sign(derive_signing_key(secret), payload)).decode("ascii")


def make_secret() -> str:
    """A new access secret: 64 random bytes as 128 hex characters (``Manager.generate_secret``)."""
    return _secrets.token_hex(64)


def extract_token(header_value: str) -> str:
    """The token in an ``Authorization`` value, by the original's rule, quirks included.

    ``re.match("(Token\\s*)(.*)")`` takes what follows a case-sensitive ``Token`` prefix (not
    stripped at the end, stopping at a newline); otherwise the whole value, stripped. So
    ``"Bearer x"`` stays ``"Bearer x"``.
    """
    match = _WITH_TOKEN.match(header_value)
    if match:
        return match.group(2)
    return header_value.strip()


def token_from_authorization(value: str) -> str:
    """The token in an ``Authorization`` value, statskit's rule (what the server uses).

    Differences from :func:`extract_token`: ``Bearer <t>`` is also accepted, both scheme names
    in any case (``token <t>``: RFC 7235), and the result is always stripped of whitespace.
    ``Token`` stays the original's case-sensitive prefix, so every header the original accepted
    yields the same token (tokens contain no whitespace).
    """
    text = value.strip()
    bearer = _BEARER.match(text)
    if bearer:
        return bearer.group(1).strip()
    return extract_token(text).strip()


class LegacyAccessFileError(ConfigError):
    """The access file cannot be used; the message names it."""


class LegacyAccessFile:
    """A stats-service ``access.json``: verifies its tokens as statskit identities.

    The identity is the token payload's ``identity`` resolved against the users' ``username``
    (then ``id``), as the original's ``recover_user`` did; the resulting :class:`Identity` is
    named by that user's ``username``, with scopes write and read.
    """

    def __init__(self, path: str = "", users: Sequence[Any] = ()) -> None:
        self.path = str(path)
        self._tokens: Dict[str, Tuple[bytes, dict]] = {}
        self._by_username: Dict[str, dict] = {}
        self._by_id: Dict[str, dict] = {}
        if path:
            self._load(read_access_file(self.path), self.path)
        if users:  # more users, not from a file: stats-service's environment pair
            self._load(users, "STATS_ACCESS_TOKEN")

    def _load(self, users: Sequence[Any], source: str) -> None:
        for index, user in enumerate(users):
            where = f"{source}: entry {index}"
            if not isinstance(user, dict):
                raise LegacyAccessFileError(f"{where} is not an object")
            username, user_id = user.get("username"), user.get("id")
            if not (isinstance(username, str) and username) and not (isinstance(user_id, str) and user_id):
                raise LegacyAccessFileError(f"{where} has neither a 'username' nor an 'id'")
            if isinstance(username, str) and username:
                self._by_username[username] = user
            if isinstance(user_id, str) and user_id:
                self._by_id[user_id] = user
            tokens = user.get("tokens", [])
            if not isinstance(tokens, list):
                raise LegacyAccessFileError(f"{where}: 'tokens' is not a list")
            for pair in tokens:
                if not isinstance(pair, dict):
                    raise LegacyAccessFileError(f"{where}: a 'tokens' item is not an object")
                token, secret = pair.get("access_token"), pair.get("access_secret")
                # The shipped template has empty strings; the original ignored a falsy secret.
                if not token or not secret:
                    continue
                if not isinstance(token, str) or not isinstance(secret, str):
                    raise LegacyAccessFileError(f"{where}: access_token and access_secret must be strings")
                if token in self._tokens:
                    log.warning("%s: access_token %s... listed twice; the last entry wins", source, token[:8])
                # Derive once here: HKDF is two extra HMAC-SHA512 per check otherwise.
                self._tokens[token] = (derive_signing_key(secret), user)

    def __len__(self) -> int:
        """Number of usable tokens."""
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._tokens

    def user_for(self, identifier: str) -> Optional[dict]:
        """The user record for a username or user id (username first, as the original)."""
        return self._by_username.get(identifier) or self._by_id.get(identifier)

    def verify(self, token: str) -> Identity:
        """The :class:`Identity` of a token listed in the file, or :class:`TokenError`."""
        entry = self._tokens.get(token) if isinstance(token, str) else None
        if entry is None:
            raise UnknownToken("unknown legacy token: not in the access file")
        key, _owner = entry
        data = _verify_with_key(token, key)
        identifier = data.get("identity")
        if not isinstance(identifier, str) or not identifier:
            raise MalformedToken("malformed legacy token: no identity")
        user = self.user_for(identifier)
        if user is None:
            raise UnknownToken(f"legacy token identity {identifier!r} is not a user of the access file")
        name = user.get("username") or user.get("id")
        return Identity(name=str(name), scopes=LEGACY_SCOPES, expires=None, legacy=True)


#: The one user of stats-service's environment pair.
ENV_USERNAME = "statsbob"


def environment_user(token: str, secret: str) -> Optional[dict]:
    """The user of stats-service's ``STATS_ACCESS_TOKEN`` + ``STATS_ACCESS_SECRET`` pair (one
    user, ``statsbob``), as an access-file entry; None when neither is set.

    The original stored the token itself as the secret, so its real tokens never verified;
    here the token is checked with the secret, once, at start: a pair that cannot work (one of
    the two missing, a token that does not verify with the secret) is a LegacyAccessFileError.
    The user's id is the token's identity, so the token names a user whatever identity it
    was made for (stats-service looked identities up by username or id).
    """
    if not token and not secret:
        return None
    if not token or not secret:
        missing = "STATS_ACCESS_TOKEN" if not token else "STATS_ACCESS_SECRET"
        raise LegacyAccessFileError(f"{missing} is not set: stats-service's environment pair needs "
                                    "both STATS_ACCESS_TOKEN and STATS_ACCESS_SECRET")
    try:
        identity = verify_legacy(token, secret)
    except TokenError as exc:
        raise LegacyAccessFileError(f"STATS_ACCESS_TOKEN does not verify with STATS_ACCESS_SECRET: {exc}") from None
    return {"id": identity, "username": ENV_USERNAME, "tokens": [{"access_token": token, "access_secret": secret}]}


def read_access_file(path: str) -> List[Any]:
    """The parsed list in a stats-service ``access.json``; LegacyAccessFileError naming ``path``."""
    try:
        with open(path, encoding="utf-8") as fh:
            users = json.load(fh)
    except OSError as exc:
        raise LegacyAccessFileError(f"cannot read legacy access file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise LegacyAccessFileError(f"legacy access file {path} is not valid JSON: {exc}") from None
    if not isinstance(users, list):
        raise LegacyAccessFileError(f"legacy access file {path} must hold a JSON list of users")
    return users


def add_legacy_token(path: str, username: str, timeout: float = 10) -> str:
    """Create or update ``path`` with a new token for ``username`` and return it (the accesshelper CLI).

    A new user gets ``{"id": "user_<uuid4>", "username", "tokens": [...]}``; an existing one
    gets the token appended, so its older clients keep working. Written atomically, mode 0600.
    """
    import tempfile
    import uuid

    users: List[Any] = read_access_file(path) if os.path.exists(path) else []
    secret = make_secret()
    token = make_legacy_token(username, secret, timeout=timeout)
    pair = {"access_token": token, "access_secret": secret}
    for user in users:
        if isinstance(user, dict) and user.get("username") == username:
            tokens = user.setdefault("tokens", [])
            if not isinstance(tokens, list):
                raise LegacyAccessFileError(f"{path}: user {username!r} has a 'tokens' that is not a list")
            # Drop the template's empty placeholder pair rather than keep it beside a real one.
            tokens[:] = [t for t in tokens if not (isinstance(t, dict) and not t.get("access_token"))]
            tokens.append(pair)
            break
    else:
        # "user_" + the uuid4 with its dashes, as accesshelper wrote it (event ids drop them).
        users.append({"id": "user_" + str(uuid.uuid4()), "username": username, "tokens": [pair]})
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o600
    fd, tmp = tempfile.mkstemp(prefix=".access-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(users, fh, indent=4)  # indent 4, as accesshelper wrote it
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        # Atomic: a server loading the file never sees half of it.
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return token

