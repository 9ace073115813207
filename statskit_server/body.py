"""Reading request bodies within their size limit, gzip included."""
from __future__ import annotations

import zlib

import falcon

from statskit.errors import RequestTimeout, TooLarge, ValidationError

_CHUNK = 64 * 1024


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The body, decompressed when ``Content-Encoding: gzip``; 413 past ``limit`` bytes either way."""
    length = req.content_length
    if length is not None and length > limit:
        raise TooLarge(f"body of {length} bytes; the limit is {limit}")
    try:
        data = req.bounded_stream.read(limit + 1)
    except TimeoutError:  # statskit_server.worker.BodyTimeout: past [server] body_timeout
        raise RequestTimeout("the request body was not received in time") from None
    if len(data) > limit:
        raise TooLarge(f"body over the limit of {limit} bytes")
    encoding = (req.get_header("Content-Encoding") or "identity").strip().lower()
    if encoding == "gzip":
        return _gunzip(data, limit)
    if encoding != "identity":
        raise ValidationError(f"unsupported Content-Encoding {encoding!r}: use gzip or none")
    return data


def _gunzip(data: bytes, limit: int) -> bytes:
    """Every member of a gzip body (RFC 1952: ``gzip -c a b`` writes two), whole: a truncated
    member or trailing bytes are a 400, never the part that decompressed (which could be
    complete NDJSON lines: a 2xx for a body that was not all stored)."""
    out = bytearray()
    rest = data
    while True:
        # A capped decompressor: a small bomb cannot make us allocate more than the limit.
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += decompressor.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise ValidationError(f"body is not valid gzip: {exc}") from None
        if len(out) > limit or decompressor.unconsumed_tail:
            raise TooLarge(f"decompressed body over the limit of {limit} bytes")
        if not decompressor.eof:
            raise ValidationError("body is not valid gzip: truncated (no end of stream)")
        rest = decompressor.unused_data
        if not rest:
            return bytes(out)
