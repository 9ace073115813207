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
    # A capped decompressor: a small bomb cannot make us allocate more than the limit.
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ValidationError(f"body is not valid gzip: {exc}") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise TooLarge(f"decompressed body over the limit of {limit} bytes")
    return out
