"""The offspot ``packages.yml``: which hosts and URLs belong to which content package.

    >>> conf = parse_packages({"packages": [
    ...     {"title": "Wikipedia", "kind": "zim", "url": "//kiwix.hotspot/viewer#wikipedia_en_all"},
    ...     {"title": "Shared files", "kind": "app", "ident": "edupi.offspot.kiwix.org", "url": "//edupi.hotspot/"},
    ...     {"title": "Broken", "url": "//x.hotspot/"}]})
    >>> [(p.kind, p.host, p.zim, p.ident) for p in conf.packages]
    [('zim', 'kiwix.hotspot', 'wikipedia_en_all', ''), ('app', 'edupi.hotspot', '', 'edupi.offspot.kiwix.org')]
    >>> conf.warnings
    ['Package with unsupported kind: None (Broken)']

The warnings are checked in the original's order (missing url, missing title, unsupported URL,
missing kind, unsupported ZIM URL, unsupported kind); a package with a warning is ignored. An
empty file, or one without a ``packages`` key, is an error (fatal in the original too).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, List

log = logging.getLogger("statskit.kpi")

_URL = re.compile(r"^//(?P<host>.*?)/.*")
_ZIM_VIEWER = re.compile(r"^//.*?/viewer#(?P<name>.+)$")
_ZIM_CONTENT = re.compile(r"^//.*?/content/(?P<name>[^/]+)(/.*)?$")


class PackagesError(ValueError):
    """The packages file cannot be used at all."""


@dataclass(frozen=True)
class Package:
    title: str
    kind: str  # zim, files or app
    host: str
    zim: str = ""  # the ZIM name, for kind zim
    ident: str = ""  # the app's ident, for kind app


@dataclass
class PackagesConf:
    packages: List[Package] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


def parse_packages(document: Any) -> PackagesConf:
    if not isinstance(document, dict) or "packages" not in document:
        raise PackagesError("the packages file is empty or has no 'packages' key")
    conf = PackagesConf()
    for item in document.get("packages") or []:
        if not isinstance(item, dict):
            conf.warnings.append(f"Package is not a mapping: {item!r}")
            continue
        warning = _check(item)
        if warning:
            conf.warnings.append(warning)
            continue
        url, kind = str(item["url"]), str(item["kind"])
        host = _URL.match(url).group("host")  # type: ignore[union-attr]  # checked by _check
        zim = ""
        if kind == "zim":
            match = _ZIM_VIEWER.match(url) or _ZIM_CONTENT.match(url)
            zim = match.group("name")  # type: ignore[union-attr]
        conf.packages.append(Package(str(item["title"]), kind, host, zim, str(item.get("ident") or "")))
    return conf


def _check(item: dict) -> str:
    url, title, kind = item.get("url"), item.get("title"), item.get("kind")
    if not url:
        return f"Package with no URL: {title}"
    if not title:
        return f"Package with no title: {url}"
    if not isinstance(url, str) or not _URL.match(url):
        return f"Package with unsupported URL: {url} ({title})"
    if not kind:
        return f"Package with unsupported kind: {kind} ({title})"
    if kind == "zim" and not (_ZIM_VIEWER.match(url) or _ZIM_CONTENT.match(url)):
        return f"Package with unsupported ZIM URL: {url} ({title})"
    if kind not in ("zim", "files", "app"):
        return f"Package with unsupported kind: {kind} ({title})"
    return ""


def load_packages(path: str) -> PackagesConf:
    """Read and parse ``path`` (YAML), logging each warning as the original did."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as exc:
        raise PackagesError(f"cannot read the packages file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise PackagesError(f"the packages file {path} is not valid YAML: {exc}") from None
    conf = parse_packages(document)
    for warning in conf.warnings:
        log.warning("%s", warning)
    return conf
