"""The fast paths: orjson and json's C encoder and scanner, each giving the strict path's answer or none.

:func:`encode` and :func:`decode` return what
:func:`~storekit.codec.strict_json.encode_strictly` and
:func:`~storekit.codec.strict_json.decode_strictly` would return, or None where
they cannot vouch for it; the caller then takes the strict path, which gives
the answer or the error. A fast path never raises and never answers
differently. Why each guard makes that so is written beside the guard; in
short:

Encoding with orjson (:func:`_encode_with_orjson`)
    * marshal check: marshal writes the builtin types and refuses every other
      type, subclasses included, except objects that expose a buffer. orjson
      refuses those buffers, and of the builtin types everything but str, int,
      float, bool, None, list, tuple and dict. So once both take the session,
      it holds only exact JSON types, as the strict walk wants. orjson also
      refuses non-str keys, lone surrogates, ints beyond 64 bits and nesting
      past 254 levels (under MAX_DEPTH).
    * passthrough options: with OPT_PASSTHROUGH_DATACLASS, _DATETIME and
      _SUBCLASS and no ``default``, orjson refuses dataclasses, datetimes and
      subclasses of str, int, dict and list instead of writing them on its own
      terms, should marshal let one through (from Python 3.12 any class can
      expose a buffer). What remains: an enum member whose class exposes a
      buffer is written as its value instead of refused.
    * null/NaN check: orjson writes a non-finite float as ``null``; json
      refuses it. A text without ``null`` has no non-finite float; a text
      with one has its floats checked.
    * size-limit rule: strings and ints come out byte for byte as json writes
      them, so only floats differ in size: orjson writes ``1e-7`` for
      ``1e-07``, one byte shorter, at most, and only with an ``e``. So the
      strict text is at most ``len + count(b"e")`` long; a text for which that
      bound is over ``max_bytes`` is left to json, which measures exactly.

Encoding with json's C encoder (:func:`_encode_with_json`)
    It is the encoder ``json.dumps`` builds for the strict path's options, so
    it writes the strict path's text, except that it converts int, float, bool
    and None keys to strings (the strict walk refuses them) and has no depth
    limit short of RecursionError. The converted-key check and the bracket
    count below give up wherever either may have happened.

Decoding (:func:`_decode_with_orjson`, :func:`_decode_compact`)
    * digit-run check: orjson reads an int beyond 64 bits as a float, where
      json keeps the int. Every int of 18 digits or fewer fits in 64 bits; a
      text with a run of 19 digits anywhere (in a string, say) goes to json.
    * orjson refuses what it does not read as json does (NaN, ``1e400``,
      escaped lone surrogates, non-UTF-8 bytes, a BOM, nesting past 1,024):
      json decides. A result that is not a dict goes to json, for its error.
    * the compact path calls the scanner of :data:`~storekit.codec.strict_json.DECODER`
      at offset 0, which is what ``DECODER.decode`` does after skipping
      whitespace; if the scan ends at the end of the text there was no
      whitespace before or after, and the result is the decoder's.
"""

from __future__ import annotations

import json
import json.scanner
import marshal
import re
from collections.abc import Callable
from typing import Any

from storekit.codec.strict_json import DECODER, MAX_DEPTH

_orjson_dumps: Callable[..., bytes] | None
_orjson_loads: Callable[[bytes], Any] | None
try:
    from orjson import OPT_PASSTHROUGH_DATACLASS, OPT_PASSTHROUGH_DATETIME, OPT_PASSTHROUGH_SUBCLASS
    from orjson import dumps as _orjson_dumps
    from orjson import loads as _orjson_loads

    # refuse (there is no default) what orjson would otherwise write on its own terms
    _ORJSON_REFUSE = OPT_PASSTHROUGH_DATACLASS | OPT_PASSTHROUGH_DATETIME | OPT_PASSTHROUGH_SUBCLASS
except ImportError:  # an interpreter orjson does not support: the json module does the work
    _orjson_dumps = _orjson_loads = None
    _ORJSON_REFUSE = 0

__all__ = ["decode", "encode"]


def encode(session: dict[Any, Any], max_bytes: int) -> bytes | None:
    """The strict path's encoding of ``session`` where a fast path vouches for it, else None.

    orjson's path where orjson is installed; what it gives up on (subclasses
    such as OrderedDict or IntEnum, ints beyond 64 bits, values that are not
    JSON) takes json's C encoder.
    """
    data = None if _orjson_dumps is None else _encode_with_orjson(session, max_bytes)
    return _encode_with_json(session, max_bytes) if data is None else data


def decode(data: bytes | bytearray | str) -> dict[str, Any] | None:
    """The strict path's session from ``data`` where a fast path vouches for it, else None."""
    if _orjson_loads is not None:
        found = _decode_with_orjson(data)
        if found is not None:
            return found
    return _decode_compact(data)


def _encode_with_orjson(session: dict[Any, Any], max_bytes: int) -> bytes | None:
    """orjson's encoding of ``session`` if json would accept the session and
    keep it within ``max_bytes``, else None.

    orjson's bytes keep the buffer they were written into (4 KiB at least),
    which a store that keeps them would hold per session: what is returned
    is a copy of its own size.
    """
    assert _orjson_dumps is not None
    try:
        # marshal check: marshal takes only the builtin types (and buffers, which orjson refuses);
        # its output is thrown away. orjson then refuses every builtin type that is not JSON.
        marshal.dumps(session)
        # passthrough options: no default, so a dataclass, datetime or subclass raises TypeError
        data = _orjson_dumps(session, option=_ORJSON_REFUSE)
    except (TypeError, ValueError):
        return None
    # size-limit rule: the strict text is at most one byte longer per "e" (1e-07 for 1e-7), and
    # the count is at most the size, so below half the limit there is nothing to count
    size = len(data)
    if size > max_bytes // 2 and size + data.count(b"e") > max_bytes:
        return None
    # null/NaN check: NaN and infinities are written as null, which json refuses to write
    if b"null" in data and not _floats_finite(session):
        return None
    return memoryview(data).tobytes()


def _floats_finite(session: dict[Any, Any]) -> bool:
    """Whether every float in ``session`` (builtin types only, no cycles) is finite."""
    stack: list[Any] = [session]
    while stack:
        container = stack.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is float:
                if item - item != 0.0:  # inf - inf and nan - nan are nan
                    return False
            elif kind is dict or kind is list or kind is tuple:
                stack.append(item)
    return True


def _refuse(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_c_encode_basestring: Any = getattr(json.encoder, "c_encode_basestring", None)
_encode_chunks: Callable[[object, int], list[str]]
if _c_make_encoder is not None and _c_encode_basestring is not None:
    # The C encoder itself, built once (JSONEncoder.encode builds one per call), with the strict
    # path's options. Arguments: markers (None: no circular check; a cycle ends in RecursionError),
    # default (refuse), string encoder (ensure_ascii=False), indent, key separator, item separator,
    # sort_keys, skipkeys, allow_nan.
    _encode_chunks = _c_make_encoder(None, _refuse, _c_encode_basestring, None, ":", ",", False, False, False)
else:  # an interpreter without the C accelerator
    _encoder = json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False
    )

    def _encode_chunks(value: object, _level: int) -> list[str]:
        return [_encoder.encode(value)]


_MAYBE_CONVERTED_KEY = re.compile(r'":(?<=[0-9el]":)(?:(?<=[0-9]":)|(?<="true":)|(?<="false":)|(?<="null":))')
"""Where json.dumps may have written an int, float, bool or None key, the one thing it
silently changes (it raises for every other non-JSON value): a key whose last character is
a digit, or a key ``true``, ``false`` or ``null``. The pattern starts with the literal
``":`` that ends every key (inside a string every quote is escaped), so the scan jumps from
key to key and looks further only at keys ending in a digit, ``e`` or ``l``. A match that is
really a str key costs the precise pattern below; only a key that looks converted costs the
strict path."""
_CONVERTED_KEY = re.compile(r'"(?:-?[0-9][0-9.eE+-]*|true|false|null)":')


def _encode_with_json(session: dict[Any, Any], max_bytes: int) -> bytes | None:
    """json's C encoder's output for ``session``, unless it is over
    ``max_bytes``, a key may have been converted or the nesting may be too
    deep; then None."""
    try:
        text = "".join(_encode_chunks(session, 0))
        data = text.encode("utf-8")  # a lone surrogate raises here, as in the strict path
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
        return None
    if len(data) > max_bytes:  # the strict path's very text: it would refuse the size
        return None
    if _MAYBE_CONVERTED_KEY.search(text) is not None and _CONVERTED_KEY.search(text) is not None:
        return None
    # The strict walk refuses MAX_DEPTH + 1 nested containers, which take as many opening
    # brackets (and twice as many characters): a text with fewer brackets is shallow enough.
    if len(text) >= 2 * MAX_DEPTH and text.count("{") + text.count("[") >= MAX_DEPTH:
        return None
    return data


_DIGITS = bytes(48 if 48 <= i <= 57 else 120 for i in range(256))  # digits to "0", the rest to "x"
_LONG_NUMBER = b"0" * 19
_scan_once: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(DECODER)  # type: ignore[arg-type]


def _decode_with_orjson(data: object) -> dict[str, Any] | None:
    assert _orjson_loads is not None
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, which json reads in a str
            return None
    elif isinstance(data, (bytes, bytearray)):  # what json.loads takes besides str
        raw = bytes(data)  # no copy of a bytes object
    else:
        return None
    # digit-run check: an int orjson would read as a float has 19 digits or more
    if _LONG_NUMBER in raw.translate(_DIGITS):
        return None
    try:
        found = _orjson_loads(raw)
    except ValueError:  # what orjson does not read as json does, and plain errors: json decides
        return None
    return found if type(found) is dict else None


def _decode_compact(data: bytes | bytearray | str) -> dict[str, Any] | None:
    """Compact JSON, as encode_session writes it, read by the scanner inside
    ``DECODER.decode``; anything else (whitespace around it, a syntax error,
    not an object, not UTF-8) is None, for the decoder's own path and errors."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        found, end = _scan_once(text, 0)
    except (StopIteration, ValueError, RecursionError, TypeError):
        return None
    return found if end == len(text) and type(found) is dict else None
