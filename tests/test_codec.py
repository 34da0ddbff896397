"""storekit.codec: strict JSON, sid checks, RFC 3339 expiry."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import importlib
import json
import json.encoder
import math
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storekit import InvalidSessionData, InvalidSessionId, codec
from storekit.codec import (
    DEFAULT_MAX_SESSION_BYTES,
    MAX_DEPTH,
    check_seconds,
    check_sid,
    cookie_json,
    decode_session,
    encode_session,
    encode_strictly,
    expires_in,
    fast_json,
    format_expires,
    parse_expires,
    session_expiry,
    session_json,
)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize("sid", [None, 0, b"x", ["x"], "", "a\ud800b", "z" * 1025])
def test_check_sid_rejects_what_no_backend_can_hold(sid: object) -> None:
    with pytest.raises(InvalidSessionId) as caught:
        check_sid(sid)
    assert caught.value.sid is sid
    assert str(caught.value)  # a message, naming the value or its type


@pytest.mark.parametrize("sid", ["a", "A", "x:y", "../x", "*", "\x00", "\U0001f600", "z" * 1024])
def test_check_sid_accepts_any_other_str(sid: str) -> None:
    assert check_sid(sid) is sid


@pytest.mark.parametrize(
    ("session", "where"),
    [
        ({1: "a"}, "has key 1 of type int"),
        ({"a": [{"b": {None: 1}}]}, "session['a'][0]['b'] has key None"),
        ({"a": {1, 2}}, "session['a'] is a set"),
        ({"a": b"x"}, "is a bytes"),
        ({"when": datetime.date(2026, 1, 1)}, "is a date"),
        ({"d": decimal.Decimal("1")}, "is a Decimal"),
        ({"x": [1.0, math.nan]}, "session['x'][1] is nan"),
        ({"x": -math.inf}, "is -inf"),
        ([1], "must be a dict"),
        ("s", "must be a dict"),
    ],
)
def test_encode_rejects_non_json_and_says_where(session: object, where: str) -> None:
    with pytest.raises(InvalidSessionData) as caught:
        encode_session(session)
    assert where in str(caught.value)


def test_encode_rejects_a_lone_surrogate() -> None:
    with pytest.raises(InvalidSessionData, match="lone surrogate"):
        encode_session({"a": "x\udc80y"})


def test_encode_keeps_64_deep_and_rejects_beyond_the_depth_limit() -> None:
    assert decode_session(encode_session(nested(64))) == nested(64)
    with pytest.raises(InvalidSessionData, match=f"more than {MAX_DEPTH} levels"):
        encode_session(nested(MAX_DEPTH + 5))
    with pytest.raises(InvalidSessionData):
        encode_session(nested(100_000))  # no RecursionError


def test_encode_enforces_the_size_limit_exactly() -> None:
    overhead = len(b'{"d":""}')
    exact = {"d": "x" * (DEFAULT_MAX_SESSION_BYTES - overhead)}
    assert len(encode_session(exact)) == DEFAULT_MAX_SESSION_BYTES
    with pytest.raises(InvalidSessionData, match=f"{DEFAULT_MAX_SESSION_BYTES + 1} bytes"):
        encode_session({"d": "x" * (DEFAULT_MAX_SESSION_BYTES - overhead + 1)})


def test_the_size_counts_utf8_bytes_not_characters() -> None:
    with pytest.raises(InvalidSessionData):
        encode_session({"d": "\U0001f600" * 300}, max_bytes=1000)  # 1,200 bytes, 300 characters


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values))
def test_encode_then_decode_is_the_json_round_trip(session: dict[str, Any]) -> None:
    surrogates = any("\ud800" <= ch <= "\udfff" for ch in json.dumps(session, ensure_ascii=False))
    if surrogates:
        with pytest.raises(InvalidSessionData, match="surrogate"):
            encode_session(session)
        return
    assert decode_session(encode_session(session)) == json.loads(json.dumps(session))


@pytest.mark.parametrize(
    ("text", "posix"),
    [
        ("2026-11-22T10:00:00.000Z", 1795341600.0),
        ("2026-11-22T10:00:00Z", 1795341600.0),
        ("2026-11-22t10:00:00z", 1795341600.0),
        ("2026-11-22T11:00:00+01:00", 1795341600.0),
        ("2026-11-22T04:30:00-05:30", 1795341600.0),
        ("2026-11-22T10:00:00.25Z", 1795341600.25),
        ("2026-11-22T10:00:00.123456789Z", 1795341600.123456789),
    ],
)
def test_parse_expires_reads_rfc3339_with_an_offset(text: str, posix: float) -> None:
    assert parse_expires(text) == pytest.approx(posix, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("2026-11-22T10:00:00", "no UTC offset"),
        ("2026-11-22 10:00:00", "no UTC offset"),
        ("2026-11-22", "not an RFC 3339"),
        ("2026-02-30T10:00:00Z", "not a valid date"),
        ("2026-11-22T10:00:00+24:00", "not a valid date"),
        ("tomorrow", "not an RFC 3339"),
        (1795341600, "got int"),
        (None, "got NoneType"),
        ("2026-11-22T10:00:00Z\n", "not an RFC 3339"),
        ("２０２６-11-22T10:00:00Z", "not an RFC 3339"),
    ],
)
def test_parse_expires_rejects_the_rest_and_says_how_to_fix_it(value: object, says: str) -> None:
    with pytest.raises(InvalidSessionData) as caught:
        parse_expires(value)
    assert says in str(caught.value)
    assert caught.value.path == ["cookie", "expires"]


def test_format_expires_writes_what_express_session_writes() -> None:
    assert format_expires(1795341600.0) == "2026-11-22T10:00:00.000Z"
    assert format_expires(1795341600.9999) == "2026-11-22T10:00:00.999Z"
    assert parse_expires(format_expires(1795341600.5)) == 1795341600.5


def test_session_expiry_reads_the_cookie() -> None:
    assert session_expiry({}) is None
    assert session_expiry({"cookie": {}}) is None
    assert session_expiry({"cookie": {"expires": None}}) is None
    assert session_expiry({"cookie": {"expires": "2026-11-22T10:00:00.000Z"}}) == 1795341600.0
    with pytest.raises(InvalidSessionData, match="must be an object"):
        session_expiry({"cookie": "yes"})


def test_expires_in_builds_an_express_shaped_cookie() -> None:
    cookie = expires_in(60, clock=lambda: 1795341600.0)
    assert cookie == {
        "originalMaxAge": 60000,
        "expires": "2026-11-22T10:01:00.000Z",
        "httpOnly": True,
        "path": "/",
    }


def canonical(data: bytes | str) -> str:
    """JSON text, rewritten by json itself: equal for equal values, floats to the last bit."""
    return json.dumps(json.loads(data), ensure_ascii=True)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too
    st.floats(),  # NaN and infinity included: every path must refuse them
    st.text(alphabet=st.characters(blacklist_categories=())),  # lone surrogates included
    st.binary(max_size=3),
)
_keys = st.one_of(
    st.text(max_size=4),
    st.sampled_from(["1", "-2", "1.5", "1e+16", "true", "false", "null", '{"1":', ',"x":', "\\", '"']),
    st.sampled_from(["a1", "x-1e5", "untrue", "nullnull", "e", "l", "name", 'q"1', "1\\"]),  # str keys
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=12,
)
FAST_PATHS = {"orjson": fast_json._encode_with_orjson, "json": fast_json._encode_with_json}


@pytest.mark.parametrize("fast", FAST_PATHS.values(), ids=FAST_PATHS.keys())
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=5))
def test_each_fast_path_vouches_only_for_what_the_strict_path_writes(
    fast: Callable[[dict[Any, Any], int], bytes | None], session: dict[Any, Any]
) -> None:
    """A fast path gives up (None) on whatever the strict path refuses, and
    what it writes decodes to what the strict path's text decodes to."""
    try:
        expected = encode_strictly(session, max_bytes=1 << 20)
    except InvalidSessionData:
        assert fast(session, 1 << 20) is None
        with pytest.raises(InvalidSessionData):
            encode_session(session)
        return
    written = fast(session, 1 << 20)
    if written is not None:
        assert canonical(written) == canonical(expected)
    assert canonical(encode_session(session)) == canonical(expected)


_floats = st.floats(allow_nan=False, allow_infinity=False)


@pytest.fixture(params=["orjson", "json"])
def library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """storekit.codec with orjson, and as it runs where orjson is not installed."""
    if request.param == "json":
        monkeypatch.setattr(fast_json, "_orjson_dumps", None)
        monkeypatch.setattr(fast_json, "_orjson_loads", None)
    else:
        assert fast_json._orjson_dumps is not None, "orjson is a dependency on CPython: pip install orjson"
    return str(request.param)


# the fixture only chooses the JSON library, the same for every input
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    session=st.dictionaries(
        st.text(max_size=3),
        st.one_of(
            _floats, st.lists(_floats, max_size=30), st.text(alphabet=st.characters(max_codepoint=0x7F))
        ),
        max_size=6,
    )
)
def test_the_size_limit_is_the_strict_encodings_to_the_byte(library: str, session: dict[str, Any]) -> None:
    """orjson may write a float one byte shorter than repr does (1e-7 for 1e-07):
    the limit still falls where the strict encoding's size puts it (set.4)."""
    size = len(encode_strictly(session, max_bytes=1 << 30))
    assert canonical(encode_session(session, max_bytes=size)) == canonical(encode_strictly(session))
    with pytest.raises(InvalidSessionData, match=f"{size} bytes"):
        encode_session(session, max_bytes=size - 1)


def test_a_session_of_short_written_floats_is_refused_at_the_limit(library: str) -> None:
    session = {"v": [1e-7] * 1000}  # repr: 1e-07; orjson: 1e-7
    size = len(encode_strictly(session))
    assert len(encode_session(session, max_bytes=size)) <= size
    with pytest.raises(InvalidSessionData):
        encode_session(session, max_bytes=size - 1)


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


class Token(uuid.UUID):
    pass


class BufferDict(dict[str, Any]):
    """marshal writes any object that exposes a buffer (from Python 3.12, any class
    with ``__buffer__``) as bytes, without looking inside."""

    def __buffer__(self, flags: int) -> memoryview:
        return memoryview(b"")


def cyclic() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "value",
    [
        uuid.UUID(int=7),
        Colour.RED,
        Point(1),
        datetime.datetime(2026, 1, 1),
        datetime.time(1, 2),
        BufferDict(when=datetime.datetime(2026, 1, 1)),
        BufferDict(x=math.nan),
        math.nan,
        -math.inf,
        [None, 1.5, [math.inf]],  # a null beside the non-finite float
        2**64,
        -(2**63) - 1,
        {1: "a"},
        {"a": {None: 1}},
        {"\ud800": 1},
        "x\udc80",
        {1, 2},
        b"x",
        1j,
        cyclic(),
        nested(300),
        nested(MAX_DEPTH + 1),
        ...,
    ],
    ids=repr,
)
@pytest.mark.parametrize("fast", FAST_PATHS.values(), ids=FAST_PATHS.keys())
def test_values_where_orjson_and_json_differ_get_json_semantics(
    fast: Callable[[dict[Any, Any], int], bytes | None], value: object
) -> None:
    """orjson writes UUIDs, enum members, dataclasses and datetimes, and NaN as null;
    json refuses them. Whatever either fast path does, the session gets json's answer."""
    session = {"v": value, "note": None}
    try:
        expected = canonical(encode_strictly(session))
    except InvalidSessionData:
        assert fast(session, 1 << 20) is None
        with pytest.raises(InvalidSessionData):
            encode_session(session)
    else:
        written = fast(session, 1 << 20)
        assert written is None or canonical(written) == expected
        assert canonical(encode_session(session)) == expected


@pytest.mark.parametrize(
    "value",
    [
        BufferDict(when=datetime.datetime(2026, 1, 1)),
        Name("n"),
        Token(int=1),
        Point(1),
        datetime.date(2026, 1, 1),
    ],
    ids=repr,
)
def test_orjson_refuses_what_marshal_may_let_through(value: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """From Python 3.12 marshal takes any class with __buffer__ (a dict or UUID subclass,
    say) as bytes; then orjson itself must refuse subclasses, dataclasses and datetimes."""
    monkeypatch.setattr(fast_json.marshal, "dumps", lambda value: b"")  # as if marshal took anything
    assert fast_json._encode_with_orjson({"v": value}, 1 << 20) is None


@pytest.mark.parametrize(
    "value",
    [Level.HIGH, Name("n"), collections.OrderedDict(a=1), (1, [2]), 2**63, -(2**63), 2**64 - 1, -0.0, 5e-324],
    ids=repr,
)
def test_what_json_accepts_comes_back_as_json_would_give_it(value: object) -> None:
    session = {"v": value}
    assert canonical(encode_session(session)) == json.dumps(json.loads(json.dumps(session)))


@pytest.mark.parametrize("size", [10, 200, 5000])
def test_encoded_sessions_hold_no_more_memory_than_their_size(size: int) -> None:
    """A store keeps what encode_session returns: a small session must not pin a big buffer."""
    session = {"d": "x" * size}
    tracemalloc.start()
    try:
        kept = [encode_session(session) for _ in range(200)]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held / len(kept) < len(kept[0]) + 200


@pytest.mark.parametrize(
    "session",
    [{"v": collections.OrderedDict(a=1)}, {"v": Level.HIGH}, {"v": Name("n")}, {"v": 2**70}],
    ids=repr,
)
def test_what_orjsons_path_gives_up_on_takes_jsons_fast_path_not_the_strict_walk(
    session: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert fast_json._encode_with_orjson(session, 1 << 20) is None
    monkeypatch.setattr(session_json, "encode_strictly", pytest.fail)
    assert canonical(encode_session(session)) == json.dumps(json.loads(json.dumps(session)))


def test_without_json_accelerator_the_json_fast_path_writes_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On an interpreter without json's C accelerator (and without orjson), the
    json fast path falls back to JSONEncoder."""
    session = {"cookie": {"expires": "2030-01-01T00:00:00.000Z"}, "é": [1, 2.5, None, True], "1": {}}
    expected = fast_json._encode_with_json(session, 1 << 20)
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    try:
        fallback = importlib.reload(fast_json)
        assert fallback._encode_with_json(session, 1 << 20) == expected
        assert fallback._encode_with_json({1: "a"}, 1 << 20) is None
    finally:
        monkeypatch.undo()
        importlib.reload(fast_json)


_json_texts = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(alphabet=st.characters(blacklist_categories=())),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)
_json_texts = st.tuples(_json_texts, st.booleans()).map(
    lambda pair: json.dumps({"v": pair[0]}, ensure_ascii=pair[1])
)


# the fixture only chooses the JSON library, the same for every input
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_json_texts)
def test_decode_session_gives_what_json_loads_gives(library: str, text: str) -> None:
    """Big ints stay ints, floats keep every bit, escaped lone surrogates and NaN are read."""
    datas: list[str | bytes] = [text]
    if not any("\ud800" <= ch <= "\udfff" for ch in text):  # a lone surrogate has no UTF-8
        datas.append(text.encode())
    for data in datas:
        assert json.dumps(decode_session(data)) == json.dumps(json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":18446744073709551616}',
        b'{"a":-9223372036854775809}',
        b'{"a":1e400}',
        b'{"a":"\\ud800"}',
        b'{"a":NaN}',
    ],
)
def test_decode_session_keeps_what_orjson_would_change_or_refuse(library: str, text: bytes) -> None:
    assert json.dumps(decode_session(text)) == json.dumps(json.loads(text))
    assert type(decode_session(b'{"a":18446744073709551616}')["a"]) is int


def test_decode_session_reads_what_json_loads_reads_and_refuses_the_rest(library: str) -> None:
    compact = b'{"a":[1,2.5,null,true],"\\u00e9":"\xc3\xa9"}'
    assert decode_session(compact) == {"a": [1, 2.5, None, True], "é": "é"}
    assert decode_session(' \n{"a": 1}\t') == {"a": 1}  # written by hand, say: not the scanner's path
    with pytest.raises(InvalidSessionData, match="not a JSON object"):
        decode_session(b"[1, 2]")
    broken: list[Any] = [b'{"a":1} x', b'{"a":', b"", b"\xff{}", bytearray(b"{"), [123, 125], -1, None]
    for data in broken:
        with pytest.raises(Exception) as expected:
            json.loads(data)
        with pytest.raises(expected.type):  # the very error json.loads raises
            decode_session(data)
    assert decode_session(bytearray(b'{"a":18446744073709551616}')) == {"a": 2**64}


def test_decode_session_reads_nesting_json_reads(library: str) -> None:
    deep = '{"a":' * 600 + "1" + "}" * 600  # beyond encode_session's limit, within json.loads'
    assert decode_session(deep) == json.loads(deep)


def test_check_seconds_takes_positive_seconds_and_names_the_rest() -> None:
    assert check_seconds("ttl", None, none="no expiry") is None
    assert check_seconds("ttl", 30) == 30.0
    assert isinstance(check_seconds("ttl", 30), float)
    assert check_seconds("ttl", 0.5) == 0.5
    assert check_seconds("resolution", 0, zero=True) == 0.0
    for bad in (0, -1, math.nan, math.inf, True, "60", [60]):
        with pytest.raises(
            ValueError, match=r"default_ttl must be a positive number of seconds, or None \(no expiry\); got"
        ):
            check_seconds("default_ttl", bad, none="no expiry")
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds; got None"):
        check_seconds("timeout", None)
    with pytest.raises(ValueError, match="resolution must be a number of seconds, 0 or more; got -1"):
        check_seconds("resolution", -1, zero=True)
    with pytest.raises(ValueError, match=r"; ask for 1 or more$"):
        check_seconds("ttl", 0, hint="; ask for 1 or more")


def test_cookie_json_leaves_out_what_express_session_leaves_undefined() -> None:
    assert cookie_json(max_age=None, expires=None) == {
        "originalMaxAge": None,
        "expires": None,
        "httpOnly": True,
        "path": "/",
    }
    full = cookie_json(max_age=1.5, expires=0.0, secure=True, domain="a.test", same_site="strict")
    assert full == {
        "originalMaxAge": 1500,
        "expires": "1970-01-01T00:00:00.000Z",
        "secure": True,
        "httpOnly": True,
        "domain": "a.test",
        "path": "/",
        "sameSite": "strict",
    }
    assert list(full) == ["originalMaxAge", "expires", "secure", "httpOnly", "domain", "path", "sameSite"]


CONCERNS = {
    "sid": ["MAX_SID_LENGTH", "check_sid"],
    "expiry": [
        "check_seconds",
        "cookie_json",
        "expires_in",
        "format_expires",
        "parse_expires",
        "session_expiry",
    ],
    "session_json": ["decode_session", "encode_session"],
    "strict_json": ["DEFAULT_MAX_SESSION_BYTES", "MAX_DEPTH", "encode_strictly"],
}


def test_the_package_exports_each_name_from_the_module_of_its_concern() -> None:
    assert codec.__all__ == sorted(name for names in CONCERNS.values() for name in names)
    for module, names in CONCERNS.items():
        owner = importlib.import_module(f"storekit.codec.{module}")
        assert [name for name in names if getattr(codec, name) is not getattr(owner, name)] == []
