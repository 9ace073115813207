"""Hypothesis strategies for hostile requests: random bytes, JSON-ish documents, near-valid
variants of every route's valid payloads, odd query strings and headers.

``requests_for(route)`` draws a :class:`Case` for one route of :func:`fuzz_app.routes`.
"""
from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

from fuzz_seeds import (AUTH_SCHEMES, CONTENT_TYPES, ENCODINGS, HEADER_CHARS, NEAR_VALUES, ODD_BODIES, ONESHOT_FORMS,
                        OPTIONAL_HEADERS, PARAMS, PATH_VALUES, PUNCTUATION, REMOTES, RW, SEEDS, TARGET_CHARS, TEXT_CHARS,
                        TOKENS, seeds_for)


@dataclass
class Case:
    method: str
    path: str
    query: str = ""
    headers: Dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    remote_addr: str = "127.0.0.1"

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        return (f"Case({self.method} {self.path!r} query={self.query[:300]!r} headers={self.headers!r} "
                f"body={self.body[:500]!r}{'...' if len(self.body) > 500 else ''})")


def encode(doc: Any) -> bytes:
    """JSON the way a sloppy client might write it (NaN and Infinity included)."""
    return json.dumps(doc, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


class Fuzzer:
    """Hostile variants drawn from one seed (hypothesis picks the seeds and the shapes; the
    details come from this generator: drawing them one by one through hypothesis cost ~8 ms a
    case, which 2,000 cases a route cannot afford)."""

    def __init__(self, seed: int, template: str = "") -> None:
        self.rnd = random.Random(seed)
        self.seeds, self.queries = seeds_for(template)

    def text(self, size: int = 20, chars: str = TEXT_CHARS) -> str:
        return "".join(self.rnd.choice(chars) for _ in range(self.rnd.randint(0, size)))

    def scalar(self) -> Any:
        rnd = self.rnd
        return rnd.choice([
            lambda: None, lambda: rnd.random() < 0.5, lambda: rnd.randint(-10, 10), lambda: rnd.randint(-2 ** 70, 2 ** 70),
            lambda: rnd.choice([0.5, -0.0, 1e308, 5e-324, float("nan"), float("inf"), -float("inf")]),
            lambda: rnd.uniform(-1e20, 1e20), self.text, lambda: rnd.choice(NEAR_VALUES)])()

    def value(self, depth: int = 0) -> Any:
        """A JSON-ish value: scalars, lists and objects, a few levels deep."""
        roll = self.rnd.random()
        if depth >= 3 or roll < 0.6:
            return self.scalar()
        if roll < 0.8:
            return [self.value(depth + 1) for _ in range(self.rnd.randint(0, 4))]
        return {self.key(): self.value(depth + 1) for _ in range(self.rnd.randint(0, 4))}

    def key(self) -> str:
        return self.rnd.choice(PARAMS + ["measurement", "fields", "tags", "_time", "uuid", "type"]) \
            if self.rnd.random() < 0.5 else self.text(8)

    def mutated(self, doc: Any, depth: int = 0, light: bool = False) -> Any:
        """``doc`` with a few of its keys dropped, retyped, renamed or added, recursively
        (``light``: one key of the top level changed)."""
        rnd = self.rnd
        if isinstance(doc, dict) and doc and depth < 4:
            out = dict(doc)
            for key in rnd.sample(sorted(out), 1 if light else min(len(out), rnd.randint(0, 3))):
                op = rnd.randint(0, 4)
                if op == 0:
                    del out[key]
                elif op == 1:
                    out[key] = self.value()
                elif op == 2:
                    out[key] = self.mutated(out[key], depth + 1)
                elif op == 3:
                    out[key] = str(out[key]) if not isinstance(out[key], str) else [out[key]]
                else:
                    out[self.key()] = out.pop(key)
            if not light and rnd.random() < 0.5:
                out[self.key()] = self.value()
            return out
        if isinstance(doc, list) and doc and depth < 4:
            items = [self.mutated(item, depth + 1) if rnd.random() < 0.5 else item for item in doc]
            return items + [self.value() for _ in range(rnd.randint(0, 2) if rnd.random() < 0.3 else 0)]
        return self.value() if rnd.random() < 0.25 else doc

    def bytes_mutated(self, data: bytes) -> bytes:
        rnd, buf = self.rnd, bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            pos = rnd.randint(0, len(buf))
            op = rnd.randint(0, 2)
            if op == 0 and buf:
                buf[min(pos, len(buf) - 1)] = rnd.randint(0, 255)
            elif op == 1:
                buf[pos:pos] = rnd.choice(PUNCTUATION)
            else:
                del buf[pos:pos + rnd.randint(1, 8)]
        return bytes(buf)

    def body(self, kind: int) -> bytes:
        rnd = self.rnd
        if kind == 0:
            return b""
        if kind == 1:
            return rnd.randbytes(rnd.randint(0, 300))
        if kind == 2:
            return encode(self.value())
        if kind == 3:
            return rnd.choice(ODD_BODIES)
        if kind == 4:  # one-shot forms (any route: a form body must not confuse a JSON one)
            form = rnd.choice(ONESHOT_FORMS).encode()
            return self.bytes_mutated(form) if rnd.random() < 0.5 else form
        # Near-valid: a valid payload of this route (mostly), as it is or mutated.
        doc = rnd.choice(self.seeds if rnd.random() < 0.8 else SEEDS)
        if kind == 5:
            return encode(doc)
        if kind in (6, 7):
            return encode(self.mutated(doc, light=kind == 6))
        if kind == 8:
            return self.bytes_mutated(encode(doc))
        return b"\n".join(encode(x) for x in (self.mutated(doc) if isinstance(doc, list) else [doc]))

    def query(self) -> str:
        rnd = self.rnd
        roll = rnd.randint(0, 9)
        if roll < 4 and self.queries:  # a valid query of this route, maybe with a pair changed
            query = rnd.choice(self.queries)
            if roll < 2:
                return query
            pairs = [tuple(p.split("=", 1)) if "=" in p else (p, "") for p in query.split("&") if p]
            if pairs:
                pairs[rnd.randrange(len(pairs))] = (rnd.choice(PARAMS), self.param_value())
            return urlencode(pairs, errors="surrogatepass")
        if roll == 4:
            return ""
        if roll == 5:
            return self.text(80, TARGET_CHARS)
        pairs = [(rnd.choice(PARAMS) if rnd.random() < 0.8 else self.text(8), self.param_value())
                 for _ in range(rnd.randint(1, 6))]
        if roll == 6:  # as a client would send them, unencoded but for what a request line cannot carry
            return quote("&".join(f"{k}={v}" for k, v in pairs), safe=TARGET_CHARS, errors="surrogatepass")
        return urlencode(pairs, errors="surrogatepass")

    def param_value(self) -> str:
        rnd = self.rnd
        if rnd.random() < 0.6:
            return rnd.choice(NEAR_VALUES)
        return self.text() if rnd.random() < 0.5 else str(rnd.randint(-2 ** 40, 2 ** 40))

    def headers(self, body: bytes) -> Tuple[Dict[str, str], bytes]:
        """Headers for ``body`` (which they may gzip, or claim to)."""
        rnd = self.rnd
        out: Dict[str, str] = {}
        which = rnd.randint(0, 9)
        if which < 5:  # the valid token, so that most cases get past authentication
            out["Authorization"] = f"{rnd.choice(AUTH_SCHEMES[:4])} {RW}"
        elif which < 8:
            out["Authorization"] = f"{rnd.choice(AUTH_SCHEMES)} {rnd.choice(TOKENS)}"
        elif which == 8:
            out["Authorization"] = self.text(60, HEADER_CHARS)
        content_type = rnd.choice(CONTENT_TYPES) if rnd.random() < 0.9 else self.text(40, HEADER_CHARS)
        if content_type is not None:
            out["Content-Type"] = content_type
        encoding = rnd.choice(ENCODINGS)
        if encoding is not None:
            out["Content-Encoding"] = encoding
            if encoding.strip().lower() == "gzip" and rnd.random() < 0.7:
                body = gzip.compress(body, compresslevel=1)
                if rnd.random() < 0.3:
                    body = self.bytes_mutated(body)
        for name, values in OPTIONAL_HEADERS:
            if rnd.random() < 0.15:
                out[name] = rnd.choice(values) if rnd.random() < 0.8 else self.text(40, HEADER_CHARS)
        if rnd.random() < 0.12:  # a Content-Length that does not match the body
            out["Content-Length"] = rnd.choice(["0", "1" * 30, str(len(body) + 10), str(max(0, len(body) - 1))])
        return out, body

    def path_value(self) -> str:
        return self.rnd.choice(PATH_VALUES) if self.rnd.random() < 0.7 else self.text(30) or "x"


def path_for(template: str, values: Dict[str, str]) -> str:
    parts = []
    for part in template.split("/"):
        if part.startswith("{") and part.endswith("}"):
            part = quote(values[part[1:-1]], safe="", errors="surrogatepass")
        parts.append(part)
    return "/".join(parts)


BODY_KINDS = st.sampled_from([0, 1, 2, 3, 4, 5, 5, 5, 6, 6, 6, 7, 8, 9])  # near-valid ones oftener
SEEDS_STRATEGY = st.integers(0, 2 ** 64 - 1)


@st.composite
def requests_for(draw: Any, templates: Sequence[str], methods: Sequence[str], all_methods: Sequence[str],
                 fields: Sequence[str]) -> Case:
    """A request to one route, mostly with a method it takes, sometimes with any other (what
    a real HTTP server hands a WSGI app: no negative or non-numeric Content-Length, which
    gunicorn answers 400 itself)."""
    fuzz = Fuzzer(draw(SEEDS_STRATEGY), templates[0])
    rnd = fuzz.rnd
    method = rnd.choice(methods) if methods and rnd.random() < 0.8 else rnd.choice(all_methods)
    path = path_for(rnd.choice(templates), {name: fuzz.path_value() for name in fields})
    body = fuzz.body(draw(BODY_KINDS))
    head, body = fuzz.headers(body)
    query = fuzz.query().lstrip("?")  # (falcon.testing refuses a leading "?")
    return Case(method, path, query, head, body, rnd.choice(REMOTES))


def json_body(text: str) -> Optional[Any]:
    try:
        return json.loads(text)
    except ValueError:
        return None
