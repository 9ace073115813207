"""Token authentication: ``Authorization: Token <t>`` (or ``Bearer <t>``), or ``?token=`` on the
routes whose clients cannot send headers (the Grafana panel posts with ``mode: 'no-cors'``).

Tokens are statskit's own (:mod:`statskit.tokens`) or stats-service's (:mod:`statskit.legacy_tokens`):
those of an ``access.json`` (``[auth] legacy_access_file``, ``STATS_ACCESS_IDENTITIES``) and the
one of its environment pair (``STATS_ACCESS_TOKEN`` + ``STATS_ACCESS_SECRET``, user statsbob).
"""
from __future__ import annotations

from typing import Any, Optional

import falcon

from statskit.legacy_tokens import LegacyAccessFile, environment_user, token_from_authorization
from statskit.tokens import Identity, TokenError, TokenSigner

CHALLENGE = ["Token", 'Bearer realm="statskit"']


class Authenticator:
    def __init__(self, signer: TokenSigner, legacy: Optional[LegacyAccessFile] = None) -> None:
        self.signer = signer
        self.legacy = legacy

    @classmethod
    def from_settings(cls, settings: Any) -> "Authenticator":
        auth = settings.auth
        env_user = environment_user(auth.legacy_access_token, auth.legacy_access_secret)
        path = auth.legacy_access_file
        legacy = LegacyAccessFile(path, [env_user] if env_user else ()) if path or env_user else None
        return cls(TokenSigner(auth.secret_key), legacy)

    def verify(self, token: str) -> Identity:
        try:
            return self.signer.verify(token)
        except TokenError:
            if self.legacy is None or token not in self.legacy:
                raise
            # A token listed in the access file: its own error says more than ours would.
            return self.legacy.verify(token)

    def require(self, req: falcon.Request, scope: str, allow_query: bool = False, form_token: str = "") -> Identity:
        """The caller's identity, or 401 (no/bad token) / 403 (token without ``scope``).

        The token is the ``Authorization`` header's, else (``allow_query``) the ``token`` query
        parameter, else ``form_token`` (a ``token`` field the route found in a form body)."""
        header = req.get_header("Authorization")
        token = token_from_authorization(header) if header else ""
        if not token and allow_query:
            token = req.get_param("token") or form_token
        if not token:
            where = "an Authorization: Token <token> header" + (" or a token parameter" if allow_query else "")
            raise falcon.HTTPUnauthorized(title="401 Unauthorized", description=f"missing token: send {where}",
                                          challenges=CHALLENGE)
        try:
            identity = self.verify(token)
        except TokenError as exc:
            raise falcon.HTTPUnauthorized(title="401 Unauthorized", description=f"invalid token: {exc}",
                                          challenges=CHALLENGE) from None
        if not identity.has(scope):
            raise falcon.HTTPForbidden(title="403 Forbidden",
                                       description=f"token of {identity.name!r} lacks the {scope!r} scope")
        req.context.identity = identity
        return identity
