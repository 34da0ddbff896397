"""The memcached launcher of the ecosystem targets, and the Django cache engine on django-redis
and on PyMemcacheCache (in a process of its own: Django is configured once per process)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap

import pytest

from storekit.testing import MemcachedMissing, MemcachedServer


def _server() -> MemcachedServer:
    try:
        return MemcachedServer()
    except MemcachedMissing as exc:
        pytest.skip(f"{exc} (apt-get install memcached)")


def test_memcached_starts_on_a_free_port_and_comes_back_on_the_same_one() -> None:
    with _server() as server:
        assert server.ping()
        port = server.port
        with server.down():
            assert not server.ping()
        assert server.ping()
        assert server.port == port
    assert not server.ping()


def test_missing_memcached_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from storekit.testing import memcached_path

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MemcachedMissing, match="apt-get install memcached"):
        memcached_path()


SCRIPT = """
    import warnings
    from storekit.ecosystem import django_caches as d
    from django.core.cache import caches
    from storekit.errors import InvalidSessionId

    for target, alias in ((d.django_redis_target, "django_redis"), (d.memcached_target, "memcached")):
        store = target.factory()
        store.set("storekit-sid-1", {"n": 1})
        assert store.get("storekit-sid-1") == {"n": 1}, alias
        key = "django.contrib.sessions.cache" + "storekit-sid-1"
        assert caches[alias].get(key) == {"n": 1}, alias  # on that alias, not the default cache
        assert caches["default"].get(key) is None, alias
        store.destroy("storekit-sid-1")
        assert store.get("storekit-sid-1") is None, alias
    try:
        d.memcached_target.factory().set("x" * 300, {"n": 1})
    except InvalidSessionId as exc:
        assert "refuses the key" in str(exc)
    else:
        raise AssertionError("a key memcached cannot hold was accepted")
    print("ok")
"""


def test_the_cache_engine_runs_on_the_alias_of_its_target() -> None:
    pytest.importorskip("django_redis")
    pytest.importorskip("pymemcache")
    _server()  # skips without memcached
    from storekit.testing import redis_server_path

    try:
        redis_server_path()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(SCRIPT)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.stdout.strip() == "ok", done.stdout[-3000:] + done.stderr[-3000:]
