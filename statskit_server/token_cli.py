"""``statskit-token``: mint and check statskit tokens, and make stats-service tokens for old clients.

    statskit-token mint grafana-panel --scopes write --ttl 30d      # prints the token only
    statskit-token verify "$TOKEN"                                  # identity=... scopes=... expires=...
    statskit-token legacy-token bob --access-json /data/access.json # prints the new legacy token

The secret comes from ``--secret-key`` (comma-separated: the first signs, all verify), else
``STATSKIT_SECRET_KEY``, else ``[auth] secret_key`` in ``--config`` (env ``STATSKIT_CONFIG``), else
``<data_dir>/secret.key``, the file ``statskit-server`` generates when nothing is configured.
Exit status: 0 success, 1 failure (message on stderr), 2 usage error.

This module must stay free of falcon and gunicorn: it is a command people run by hand.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Tuple

from statskit.config import (
    ConfigError,
    Settings,
    load_settings,
    parse_duration,
    parse_list,
)
from statskit.constants import SECRET_FILE
from statskit.legacy_tokens import (
    LegacyAccessFile,
    LegacyAccessFileError,
    add_legacy_token,
    token_from_authorization,
)
from statskit.tokens import (
    NO_SECRET_MESSAGE,
    SCOPES,
    Identity,
    NoSecretKey,
    TokenError,
    TokenSigner,
    format_epoch,
    normalize_scopes,
    validate_name,
)

PROG = "statskit-token"

# Same name as statskit_server.cli.SECRET_FILE; not imported from there because that module's
# package pulls in falcon, and this command must start fast.

#: accesshelper's default --access_json.
DEFAULT_ACCESS_JSON = "/data/access.json"



class CommandError(Exception):
    """A failure to report as ``error: <message>`` with exit status 1."""


def parse_ttl(text: str) -> float:
    """Seconds from ``"3600"``, ``"30d"``, ``"12h"``, ``"1d12h"``, ``"2w"``; must be > 0."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use seconds, or e.g. 30d, 12h, 1d12h)") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"ttl must be positive: {text!r}")
    return seconds


def _name_arg(text: str) -> str:
    try:
        return validate_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _scopes_arg(text: str) -> frozenset:
    try:
        return normalize_scopes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    secret_opts = argparse.ArgumentParser(add_help=False)
    group = secret_opts.add_argument_group("secret")
    group.add_argument("--secret-key", metavar="S", default=None,
                       help="token secret(s), comma-separated: the first signs, all verify "
                            "(default: env STATSKIT_SECRET_KEY, then [auth] secret_key in --config)")
    group.add_argument("--config", metavar="INI", default=os.environ.get("STATSKIT_CONFIG"),
                       help="statskit ini file (env STATSKIT_CONFIG)")
    group.add_argument("--data-dir", metavar="DIR", default=None,
                       help=f"where statskit-server keeps {SECRET_FILE}, used when no secret is configured")

    parser = argparse.ArgumentParser(prog=PROG, description="Mint and check statskit access tokens.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    mint = sub.add_parser("mint", parents=[secret_opts], help="print a new token (and nothing else)")
    mint.add_argument("name", type=_name_arg, metavar="NAME", help="identity: 1-128 printable characters, no spaces")
    mint.add_argument("--scopes", type=_scopes_arg, default=frozenset({"write"}),
                      help=f"comma-separated, from {','.join(SCOPES)} (default: write)")
    mint.add_argument("--ttl", type=parse_ttl, default=None,
                      help="lifetime: seconds or e.g. 30d, 12h, 1d12h (default: never expires)")

    verify = sub.add_parser("verify", parents=[secret_opts], help="check a token and print its identity")
    verify.add_argument("token", metavar="TOKEN", help="the token (a 'Token ...'/'Bearer ...' header value works too)")
    verify.add_argument("--access-json", metavar="PATH", default=None,
                        help="also accept tokens of this stats-service access.json "
                             "(default: [auth] legacy_access_file, env STATS_ACCESS_IDENTITIES)")

    legacy = sub.add_parser("legacy-token", help="add a stats-service token for USERNAME to an access.json")
    legacy.add_argument("username", type=_name_arg, metavar="USERNAME")
    legacy.add_argument("--access-json", metavar="PATH", default=None,
                        help="file to create/update (default: [auth] legacy_access_file, env "
                             f"STATS_ACCESS_IDENTITIES, else {DEFAULT_ACCESS_JSON} like accesshelper)")
    legacy.add_argument("--config", metavar="INI", default=os.environ.get("STATSKIT_CONFIG"),
                        help="statskit ini file (env STATSKIT_CONFIG)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    # CLI values go in as overrides, the top layer: --flag > environment > ini > defaults.
    overrides = {}
    if getattr(args, "secret_key", None) is not None:
        overrides["auth.secret_key"] = parse_list(args.secret_key)
    if getattr(args, "data_dir", None):
        overrides["server.data_dir"] = args.data_dir
    if getattr(args, "access_json", None):
        overrides["auth.legacy_access_file"] = args.access_json
    try:
        return load_settings(args.config, overrides=overrides)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def resolve_secrets(settings: Settings) -> Tuple[List[str], str]:
    """The configured secrets and where they came from; ``([], "")`` if there are none."""
    if settings.auth.secret_key:
        return list(settings.auth.secret_key), "configuration"
    path = os.path.join(settings.server.data_dir, SECRET_FILE)
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as fh:
                secret = fh.read().strip()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        if secret:
            return [secret], path
    return [], ""


def _no_secret(settings: Settings) -> CommandError:
    path = os.path.join(settings.server.data_dir, SECRET_FILE)
    return CommandError(f"{NO_SECRET_MESSAGE} (or pass --secret-key, or --data-dir where {SECRET_FILE} is; "
                        f"{path} does not exist)")


def _format_expires(expires: Optional[float]) -> str:
    return "never" if expires is None else format_epoch(expires)


def format_identity(identity: Identity) -> str:
    """``identity=NAME scopes=read,write expires=never`` (plus `` legacy=true``)."""
    line = f"identity={identity.name} scopes={','.join(sorted(identity.scopes))} expires={_format_expires(identity.expires)}"
    return line + (" legacy=true" if identity.legacy else "")


def cmd_mint(args: argparse.Namespace) -> int:
    settings = _settings(args)
    secrets, _source = resolve_secrets(settings)
    if not secrets:
        raise _no_secret(settings)
    try:
        token = TokenSigner(secrets, cache_size=0).mint(args.name, args.scopes, ttl=args.ttl)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(token)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    token = token_from_authorization(args.token)
    secrets, _source = resolve_secrets(settings)
    legacy_path = settings.auth.legacy_access_file
    if not secrets and not legacy_path:
        raise _no_secret(settings)

    signer_error: Optional[TokenError] = None
    if secrets:
        try:
            print(format_identity(TokenSigner(secrets, cache_size=0).verify(token)))
            return 0
        except TokenError as exc:
            signer_error = exc
    if not legacy_path:
        raise CommandError(str(signer_error))
    try:
        legacy = LegacyAccessFile(legacy_path)
    except LegacyAccessFileError as exc:
        raise CommandError(str(exc)) from None
    try:
        print(format_identity(legacy.verify(token)))
        return 0
    except TokenError as exc:
        legacy_error = exc
    # Pick the error that explains it: a token listed in the access file is a legacy one; any
    # other was meant for statskit's signer, or needs a secret to be checked at all.
    if token in legacy:
        raise CommandError(str(legacy_error))
    if signer_error is not None:
        raise CommandError(str(signer_error))
    if "." in token:  # shaped like a statskit token, and no secret to check it with
        raise _no_secret(settings)
    raise CommandError(str(legacy_error))


def cmd_legacy_token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = settings.auth.legacy_access_file or DEFAULT_ACCESS_JSON
    try:
        token = add_legacy_token(path, args.username)
    except LegacyAccessFileError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    # stdout carries the token only, so `TOKEN=$(statskit-token legacy-token bob)` works.
    print(f"{PROG}: added a token for {args.username!r} to {path}\n"
          f"  clients send it as the header  Authorization: Token <token>  (stats-client: access_token=...)\n"
          f"  statskit-server accepts it with  STATS_ACCESS_IDENTITIES={path}  ([auth] legacy_access_file)",
          file=sys.stderr)
    print(token)
    return 0


_COMMANDS = {"mint": cmd_mint, "verify": cmd_verify, "legacy-token": cmd_legacy_token}


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status (argparse exits with 2 on usage errors)."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (CommandError, NoSecretKey) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TokenError as exc:  # pragma: no cover - each command turns these into CommandError
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
