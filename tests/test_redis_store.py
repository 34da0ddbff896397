"""RedisStore beyond the suite: connect-redis's layout, TTLs, touch, glob escaping, namespaces,
hostile input, outages and recovery, against a real redis-server."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from storekit import InvalidSessionData, InvalidSessionId, StoreUnavailable, expires_in
from storekit.codec import encode_session, format_expires
from storekit.reference.redis import CorruptSession, RedisStore, namespace_prefix
from storekit.testing.redis_server import RedisServer

DAY_MS = 86_400_000


@pytest.fixture
def make(server: RedisServer, raw: redis.Redis) -> Iterator[Callable[..., RedisStore]]:
    made: list[RedisStore] = []

    def make(**options: Any) -> RedisStore:
        made.append(RedisStore(server.url, **options))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make: Callable[..., RedisStore]) -> RedisStore:
    return make()


def express_session(seconds: float | None = 60, **data: Any) -> dict[str, Any]:
    cookie = expires_in(seconds) if seconds is not None else {"originalMaxAge": None, "expires": None}
    return {"cookie": cookie, **data}


# -- connect-redis's layout ----------------------------------------------------------------------


def test_a_session_is_json_at_sess_sid_with_the_cookie_expiry_to_the_millisecond(
    store: RedisStore, raw: redis.Redis
) -> None:
    session = express_session(60, user="ada")
    store.set("abc", session)
    assert raw.keys("*") == [b"sess:abc"]
    assert raw.type("sess:abc") == b"string"
    assert raw.get("sess:abc") == encode_session(session)
    assert json.loads(raw.get("sess:abc") or b"") == session
    assert 59_000 < raw.pttl("sess:abc") <= 60_000


def test_the_expiry_is_kept_to_the_millisecond_not_rounded_up_to_the_second(
    store: RedisStore, raw: redis.Redis
) -> None:
    store.set("abc", express_session(1.3))
    assert 1_100 < raw.pttl("sess:abc") <= 1_300  # connect-redis's EX would say 2 s


def test_a_session_without_expiry_lives_one_day(store: RedisStore, raw: redis.Redis) -> None:
    store.set("a", {"n": 1})
    store.set("b", express_session(None, n=2))
    assert DAY_MS - 5_000 < raw.pttl("sess:a") <= DAY_MS
    assert DAY_MS - 5_000 < raw.pttl("sess:b") <= DAY_MS


def test_the_default_ttl_and_the_prefix_are_configurable(make: Any, raw: redis.Redis) -> None:
    make(ttl=5, prefix="app:").set("a", {"n": 1})
    make(ttl=None, prefix="").set("b", {"n": 2})
    assert 4_000 < raw.pttl("app:a") <= 5_000
    assert raw.pttl("b") == -1  # no expiry at all


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), "60"])
def test_a_default_ttl_that_is_not_a_positive_number_is_refused(server: RedisServer, ttl: Any) -> None:
    with pytest.raises(
        ValueError, match=r"ttl must be a positive number of seconds, or None \(no expiry\); got"
    ):
        RedisStore(server.url, ttl=ttl)


def test_a_past_expiry_deletes_the_key(store: RedisStore, raw: redis.Redis) -> None:
    store.set("a", express_session(60))
    store.set("a", express_session(-1))
    assert raw.exists("sess:a") == 0
    store.set("b", express_session(-1))
    assert raw.exists("sess:b") == 0


def test_a_session_connect_redis_wrote_is_read(store: RedisStore, raw: redis.Redis) -> None:
    text = (
        '{"cookie":{"originalMaxAge":60000,"expires":"2030-01-01T00:00:00.000Z","secure":false,'
        '"httpOnly":true,"path":"/"},"views":3}'
    )
    raw.set("sess:K2VpIjSG", text, ex=60)
    assert store.get("K2VpIjSG") == json.loads(text)


# -- touch --------------------------------------------------------------------------------------


def test_touch_moves_the_expiry_and_leaves_the_value_byte_for_byte(
    store: RedisStore, raw: redis.Redis
) -> None:
    store.set("a", express_session(10, n=1))
    before = raw.get("sess:a")
    store.touch("a", express_session(3600, n=999))
    assert raw.get("sess:a") == before
    assert 3_590_000 < raw.pttl("sess:a") <= 3_600_000


def test_touch_never_creates_a_key(store: RedisStore, raw: redis.Redis) -> None:
    store.touch("nobody", express_session(3600))
    store.touch("nobody", {"n": 1})
    assert raw.exists("sess:nobody") == 0


def test_touch_without_expiry_renews_the_default_ttl(make: Any, raw: redis.Redis) -> None:
    store = make(ttl=100)
    store.set("a", express_session(5))
    store.touch("a", {"n": 1})
    assert 99_000 < raw.pttl("sess:a") <= 100_000
    forever = make(ttl=None)
    forever.touch("a", {"n": 1})
    assert raw.pttl("sess:a") == -1


def test_touch_with_a_past_expiry_deletes(store: RedisStore, raw: redis.Redis) -> None:
    store.set("a", express_session(60))
    store.touch("a", express_session(-1))
    assert raw.exists("sess:a") == 0


def test_touch_with_a_malformed_expiry_raises_and_changes_nothing(
    store: RedisStore, raw: redis.Redis
) -> None:
    store.set("a", express_session(60))
    with pytest.raises(InvalidSessionData, match="RFC 3339"):
        store.touch("a", {"cookie": {"expires": "tomorrow"}})
    with pytest.raises(InvalidSessionData, match="must be a dict"):
        store.touch("a", ["not", "a", "session"])  # type: ignore[arg-type]
    assert 59_000 < raw.pttl("sess:a") <= 60_000


# -- SCAN over the store's own prefix only --------------------------------------------------------

GLOBBY_SIDS = ["*", "?", "[", "]", "[a-z]", "\\", "a*b", "\\*", "^", "sess:*"]


@pytest.mark.parametrize(
    ("prefix", "foreign"),
    [
        ("sess:", ["sess2:x", "other:*", "sess", "sess:", "Sess:x", "sessx"]),
        ("p*:", ["pXYZ:y", "p:y", "p*"]),  # unescaped, p*:* would match pXYZ:y
        ("p?:", ["pX:y", "p:y"]),
        ("p[1]:", ["p1:y", "p[1]", "p]:y"]),
        ("p\\:", ["p:y", "p\\"]),  # unescaped, p\:* would match p:y
        ("[", ["a", "["]),  # the key that is the prefix itself is no session
        ("*", ["anything"]),
    ],
)
def test_all_length_and_clear_see_their_own_prefix_only(
    make: Any, raw: redis.Redis, prefix: str, foreign: list[str]
) -> None:
    store = make(prefix=prefix)
    for key in foreign:
        raw.set(key, b"foreign")
    sessions = {sid: {"sid": sid} for sid in GLOBBY_SIDS}
    for sid, session in sessions.items():
        store.set(sid, session)
    assert store.length() == len(sessions)
    assert store.all() == sessions
    assert sorted(store.ids()) == sorted(sessions)
    store.destroy("*")
    assert store.get("a*b") == {"sid": "a*b"}  # destroy("*") removed the key "<prefix>*" only
    assert store.length() == len(sessions) - 1
    store.clear()
    assert store.length() == 0
    assert sorted(raw.keys("*")) == sorted(key.encode() for key in foreign)


def test_a_sid_named_star_is_one_session_not_a_pattern(store: RedisStore, raw: redis.Redis) -> None:
    for sid in ("*", "a", "b"):
        store.set(sid, {"sid": sid})
    assert raw.get("sess:*") == b'{"sid":"*"}'
    store.destroy("*")
    assert store.all() == {"a": {"sid": "a"}, "b": {"sid": "b"}}


def test_namespaces_never_see_each_other(make: Any) -> None:
    """Namespace "a" must not see "a:b"'s keys, nor the default prefix see either."""
    plain, a, ab = make(), make(prefix=namespace_prefix("a")), make(prefix=namespace_prefix("a:b"))
    assert (namespace_prefix("a"), namespace_prefix("a:b")) == ("sess-a:", "sess-a%3Ab:")
    plain.set("b:x", {"who": "plain"})
    a.set("b:x", {"who": "a"})
    ab.set("x", {"who": "a:b"})
    assert (plain.all(), a.all(), ab.all()) == (
        {"b:x": {"who": "plain"}},
        {"b:x": {"who": "a"}},
        {"x": {"who": "a:b"}},
    )
    a.clear()
    assert (plain.length(), a.length(), ab.length()) == (1, 0, 1)
    with pytest.raises(ValueError, match="non-empty str"):
        namespace_prefix("")


def test_all_over_many_sessions_is_one_dict(store: RedisStore) -> None:
    sessions = {f"s{n}": {"n": n} for n in range(2500)}  # more than one MGET batch
    for sid, session in sessions.items():
        store.set(sid, session)
    assert store.all() == sessions
    store.clear()
    assert store.all() == {}


# -- hostile input ------------------------------------------------------------------------------


@pytest.mark.parametrize("sid", ["", 1, None, b"abc", "\ud800", "x" * 1025])
def test_a_bad_sid_is_refused_before_redis_sees_it(store: RedisStore, raw: redis.Redis, sid: Any) -> None:
    for call in (store.get, store.destroy, lambda s: store.set(s, {}), lambda s: store.touch(s, {})):
        with pytest.raises(InvalidSessionId):
            call(sid)
    assert raw.dbsize() == 0


@pytest.mark.parametrize(
    "sid", ["a b", "../x", "\n", "\x00", "{tag}", "😀", "ü", "u\u0308", "%2A", "x" * 1024]
)
def test_odd_sids_round_trip_to_their_own_key(store: RedisStore, raw: redis.Redis, sid: str) -> None:
    store.set(sid, {"sid": sid})
    assert raw.keys("*") == [("sess:" + sid).encode()]
    assert store.get(sid) == {"sid": sid}
    assert store.all() == {sid: {"sid": sid}}


def test_a_session_of_one_mebibyte_is_kept_and_a_larger_one_refused(store: RedisStore) -> None:
    big = {"blob": "x" * ((1 << 20) - 20)}
    assert len(encode_session(big)) <= 1 << 20
    store.set("big", big)
    assert store.get("big") == big
    with pytest.raises(InvalidSessionData, match="bytes of JSON"):
        store.set("big", {"blob": "x" * (1 << 20)})
    assert store.get("big") == big


@pytest.mark.parametrize("value", [b"\xff{not json", b"not json", b"[1, 2]", b'"text"', b"", b"[" * 100_000])
def test_garbage_under_the_prefix_raises_an_error_naming_the_key(
    store: RedisStore, raw: redis.Redis, value: bytes
) -> None:
    raw.set("sess:bad", value)
    with pytest.raises(CorruptSession, match="key 'sess:bad' holds") as caught:
        store.get("bad")
    assert caught.value.key == "sess:bad"
    with pytest.raises(CorruptSession, match="sess:bad"):
        store.all()
    store.set("bad", {"fixed": True})  # SET replaces it
    assert store.get("bad") == {"fixed": True}


def test_a_key_of_another_type_raises_an_error_naming_the_key(store: RedisStore, raw: redis.Redis) -> None:
    raw.rpush("sess:list", b"1")
    with pytest.raises(CorruptSession, match=r"key 'sess:list' .* not a string .*WRONGTYPE"):
        store.get("list")
    store.destroy("list")
    assert raw.exists("sess:list") == 0


def test_a_key_that_is_not_utf8_under_the_prefix_is_named(store: RedisStore, raw: redis.Redis) -> None:
    raw.set(b"sess:\xff", b"{}")
    with pytest.raises(CorruptSession, match=r"sess:\\xff.*not UTF-8"):
        store.all()
    assert store.length() == 1


# -- clients, URLs, outages -----------------------------------------------------------------------


def test_a_client_of_the_app_is_used_and_left_open(server: RedisServer, raw: redis.Redis) -> None:
    client = redis.Redis(port=server.port, decode_responses=True)
    with RedisStore(client) as store:
        store.set("a", {"n": 1})
        assert store.get("a") == {"n": 1}
        assert store.all() == {"a": {"n": 1}}
    assert client.ping()
    client.close()


def test_what_is_not_a_client_or_url_is_refused_with_the_fix(server: RedisServer) -> None:
    with pytest.raises(ValueError, match=r"is not a Redis URL.*redis://host:port/db"):
        RedisStore("127.0.0.1:6379")
    with pytest.raises(TypeError, match="needs a redis-py client or a URL"):
        RedisStore(42)
    with pytest.raises(TypeError, match="prefix must be a str"):
        RedisStore(server.url, prefix=None)  # type: ignore[arg-type]


def every_operation(store: RedisStore) -> dict[str, Callable[[], Any]]:
    return {
        "get": lambda: store.get("a"),
        "set": lambda: store.set("b", {"n": 2}),
        "destroy": lambda: store.destroy("a"),
        "touch": lambda: store.touch("a", express_session(60)),
        "length": store.length,
        "all": store.all,
        "clear": store.clear,
    }


def test_a_stopped_server_raises_store_unavailable_at_once_and_the_store_recovers(
    server: RedisServer, store: RedisStore
) -> None:
    store.set("a", express_session(60, n=1))
    with server.down():
        for name, call in every_operation(store).items():
            began = time.monotonic()
            with pytest.raises(StoreUnavailable, match=rf"{name}: Redis at 127.0.0.1:{server.port}/0"):
                call()
            assert time.monotonic() - began < 2.5, name
    store.set("c", {"back": True})  # no rebuild; the first command after the restart succeeds
    assert store.get("c") == {"back": True}


def test_a_hung_server_raises_store_unavailable_within_the_timeout(server: RedisServer, make: Any) -> None:
    store = make(timeout=0.6)
    store.set("a", {"n": 1})
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        for name, call in every_operation(store).items():
            began = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"TimeoutError|Timeout"):
                call()
            assert time.monotonic() - began < 0.6 + 1.0, name  # two attempts of 0.3 s, and slack
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert store.get("b") == {"n": 2} or store.get("b") is None  # the hung SET may or may not have landed
    store.set("c", {"back": True})
    assert store.get("c") == {"back": True}


def test_a_store_built_while_redis_is_down_works_once_it_is_up(server: RedisServer) -> None:
    with server.down():
        store = RedisStore(server.url)
        with pytest.raises(StoreUnavailable):
            store.get("a")
    store.set("a", {"n": 1})
    assert store.get("a") == {"n": 1}
    store.close()


def test_an_expiry_written_by_format_expires_reads_back(store: RedisStore) -> None:
    when = time.time() + 30
    store.set("a", {"cookie": {"expires": format_expires(when)}})
    assert store.get("a") == {"cookie": {"expires": format_expires(when)}}
