"""storekit.ecosystem: every target loads and passes a short run of the suite's plumbing,
and the third-party bugs that docs/compatibility.md describes still reproduce as described.

The full matrix is what ``python scripts/compatibility.py`` produces.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cachelib")
pytest.importorskip("beaker")
pytest.importorskip("django")

from storekit.ecosystem import TARGETS

ROOT = Path(__file__).resolve().parent.parent


def test_import_storekit_needs_no_third_party_library() -> None:
    code = (
        "import sys, storekit, storekit.ecosystem\n"
        "third = ('flask', 'django', 'beaker', 'cachelib', 'flask_session', 'litestar', 'starsessions',\n"
        "         'aiohttp', 'aiohttp_session', 'aiomcache', 'django_redis', 'pymemcache', 'sqlalchemy')\n"
        "bad = [m for m in third if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_there_are_at_least_twenty_targets_with_stable_paths() -> None:
    assert len(TARGETS) >= 20
    assert TARGETS["cachelib SimpleCache"] == "storekit.ecosystem.cachelib:simple_cache_target"
    assert TARGETS["Litestar RedisStore"] == "storekit.ecosystem.litestar:redis_target"


def test_every_target_imports_as_a_target_of_its_name() -> None:
    from importlib import import_module

    for module in ("flask_session", "litestar", "starsessions", "aiohttp_session", "django_redis"):
        pytest.importorskip(module)
    for name, spec in TARGETS.items():
        module, _, attr = spec.partition(":")
        assert getattr(import_module(module), attr).name == name, spec


def test_every_target_loads_and_runs_a_subset_of_the_suite(tmp_path: Path) -> None:
    """One pytest process for all targets, only the clauses about unknown sids (get.1, destroy.2):
    every adapter loads, builds its backend and translates "no such session"."""
    for module in ("flask_session", "litestar", "starsessions", "aiohttp_session", "django_redis"):
        pytest.importorskip(module)
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-k", "unknown_sid"]
    command += [f"--storekit={spec}" for spec in TARGETS.values()]
    command.append(f"--storekit-report={report}")
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    targets = {t["name"]: t for t in json.loads(report.read_text())["targets"]}
    assert set(targets) == set(TARGETS), done.stdout[-3000:]
    for name, target in targets.items():
        verdicts = {c["id"]: c["verdict"] for c in target["clauses"]}
        assert verdicts["get.1"] in ("passed", "failed"), (name, verdicts["get.1"])
        assert verdicts["destroy.2"] in ("passed", "failed"), (name, verdicts["destroy.2"])
    # every adapter translates "no such session" to None, whatever the backend answers
    assert all(
        {c["id"]: c["verdict"] for c in t["clauses"]}["get.1"] == "passed" for t in targets.values()
    ), done.stdout[-3000:]


# -- the third-party bugs docs/compatibility.md describes ------------------------------------


def test_beaker_delete_then_save_keeps_a_record_that_loads_as_a_live_session() -> None:
    from beaker.session import Session

    session = Session({}, use_cookies=False, type="memory")
    session["user"] = 1
    session.save()
    sid = session.id
    doomed = Session({}, id=sid, use_cookies=False, type="memory")
    doomed.delete()
    doomed.save()
    again = Session({}, id=sid, use_cookies=False, type="memory")
    assert again.is_new is False
    assert "user" not in again


def test_beaker_file_ids_that_differ_by_dots_or_directories_share_a_file(tmp_path: Path) -> None:
    from beaker.session import Session

    def session(sid: str) -> Session:
        return Session({}, id=sid, use_cookies=False, type="file", data_dir=str(tmp_path))

    first = session("abc.def")
    first["who"] = "first"
    first.save()
    assert session("abcdef").get("who") == "first"
    second = session("one/two")
    second["who"] = "second"
    second.save()
    assert session("other/two").get("who") == "second"


def test_beaker_memory_keeps_an_entry_for_every_unknown_id_loaded() -> None:
    from beaker.container import MemoryNamespaceManager
    from beaker.session import Session

    registry = MemoryNamespaceManager.namespaces.dict
    before = len(registry)
    for n in range(100):
        Session({}, id=f"storekit-unknown-{n}", use_cookies=False, type="memory")
    assert len(registry) - before == 100


def test_cachelib_redis_clear_treats_its_prefix_as_a_glob_pattern() -> None:
    import redis
    from cachelib import RedisCache

    from storekit.testing.redis_server import RedisServer

    try:
        server = RedisServer()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    with server:
        client = redis.Redis.from_url(server.url)
        other, mine = RedisCache(client, key_prefix="app1:"), RedisCache(client, key_prefix="app[1]:")
        other.set("k", "precious")
        mine.set("k", "mine")
        mine.clear()
        assert other.get("k") is None  # another prefix's key is gone
        assert mine.get("k") == "mine"  # and its own is still there


def test_cachelib_timeouts_of_zero_and_below_diverge() -> None:
    from cachelib import SimpleCache

    cache = SimpleCache()
    cache.set("zero", 1, timeout=0)
    cache.set("negative", 1, timeout=-5)
    assert cache.get("zero") == 1  # 0 means "never expires"
    assert cache.get("negative") is None


def _compatibility_script() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("compatibility", ROOT / "scripts" / "compatibility.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compatibility"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_docs_compatibility_md_is_what_the_script_renders_with_every_failure_explained() -> None:
    script: Any = _compatibility_script()
    page = script.keep_http_matrix(script.render(list(TARGETS)))
    assert (ROOT / "docs" / "compatibility.md").read_text(encoding="utf-8") == page, (
        "docs/compatibility.md is out of date: run python scripts/compatibility.py --render-only"
    )
    assert "no explanation yet" not in page
    for name in TARGETS:
        assert f"### {name}\n" in page
    assert (ROOT / "docs" / "compatibility" / "matrix.json").read_text(
        encoding="utf-8"
    ) == script.matrix_text(list(TARGETS)), (
        "docs/compatibility/matrix.json is out of date: run python scripts/compatibility.py --render-only"
    )


def test_matrix_json_classifies_every_failure_and_names_the_versions() -> None:
    matrix = json.loads((ROOT / "docs" / "compatibility" / "matrix.json").read_text(encoding="utf-8"))
    assert {t["name"] for t in matrix["targets"]} >= set(TARGETS)
    assert {"redis-server", "memcached", "litestar", "Flask-Session"} <= set(matrix["versions"])
    for target in matrix["targets"]:
        for clause in target["clauses"]:
            if clause["verdict"] == "failed":
                assert clause["classification"] in matrix["classifications"], (target["name"], clause["id"])


def test_a_submitted_report_becomes_a_row_marked_submitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script: Any = _compatibility_script()
    report = json.loads(
        (ROOT / "docs" / "compatibility" / "reports" / "litestar-memorystore.json").read_text()
    )
    report["targets"][0]["name"] = "Example store"
    (tmp_path / "example-store.json").write_text(json.dumps(report))
    monkeypatch.setattr(script, "SUBMITTED", tmp_path)
    monkeypatch.setattr(script, "ROOT", tmp_path.parent)
    page = script.render(["Litestar MemoryStore"])
    assert "| Example store (submitted) |" in page
    assert f"`submitted as {tmp_path.name}/example-store.json`" in page
    assert "no explanation yet" in page  # its failures are not explained in explanations.md
    rows = script.matrix(["Litestar MemoryStore"])["targets"]
    assert rows[-1]["submitted"] == f"{tmp_path.name}/example-store.json"


@pytest.mark.parametrize("kind", ["SimpleCache", "FileSystemCache"])
def test_cachelib_evicts_live_sessions_beyond_its_threshold(kind: str, tmp_path: Path) -> None:
    from cachelib import FileSystemCache, SimpleCache

    cache = SimpleCache() if kind == "SimpleCache" else FileSystemCache(str(tmp_path), threshold=500)
    for n in range(510):
        cache.set(f"session:{n}", {"n": n}, timeout=3600 + n)
    lost = [n for n in range(510) if cache.get(f"session:{n}") is None]
    assert lost == list(range(9))
