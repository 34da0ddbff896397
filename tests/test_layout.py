"""The layout's promises: every public path resolves, and importing one part loads only that part."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

PUBLIC_PATHS = [
    "storekit.reference:MemoryStore",
    "storekit.reference:AsyncMemoryStore",
    "storekit.reference:ClusterStore",
    "storekit.reference:AsyncClusterStore",
    "storekit.reference:cluster_target",
    "storekit.reference:cluster_async_target",
    "storekit.reference:RedisStore",
    "storekit.reference:AsyncRedisStore",
    "storekit.reference:redis_target",
    "storekit.reference:StickyServer",
    "storekit.reference.cluster:setup",
    "storekit.reference.cluster:ClusterStore",
    "storekit.reference.redis:RedisStore",
    "storekit.reference.sticky:StickyServer",
    "storekit.reference.sticky:main",
    "storekit.wsgi:SessionMiddleware",
    "storekit.asgi:SessionMiddleware",
    "storekit.flask:StoreSessionInterface",
    "storekit.django:SessionStore",
    "storekit.testing:RedisServer",
    "storekit.testing:request",
]


@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_a_public_path_resolves(path: str) -> None:
    assert pkgutil.resolve_name(path) is not None


def _imported_by(statement: str) -> dict[str, object]:
    """The storekit modules, and the at-fork hooks storekit set, in a new interpreter after ``statement``."""
    probe = (
        "import os, sys\n"
        "hooks = []\n"
        "real = os.register_at_fork\n"
        "def counting(**kw):\n"
        "    caller = sys._getframe(1).f_globals.get('__name__', '')\n"
        "    if caller.startswith('storekit'):\n"
        "        hooks.append(caller)\n"
        "    real(**kw)\n"
        "os.register_at_fork = counting\n"
        f"{statement}\n"
        "import json\n"
        "print(json.dumps({'modules': sorted(m for m in sys.modules if m.startswith('storekit')),"
        " 'hooks': len(hooks)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "statement",
    [
        "import storekit.reference.memory",
        "from storekit.reference import MemoryStore",
        "from storekit.reference import AsyncMemoryStore",
    ],
)
def test_importing_memory_store_loads_no_other_part_and_hooks_nothing(statement: str) -> None:
    seen = _imported_by(statement)
    others = [m for m in seen["modules"] if m.startswith(("storekit.reference.", "storekit.testing"))]  # type: ignore[attr-defined]
    assert others == ["storekit.reference.memory"], others
    assert seen["hooks"] == 0


def test_importing_the_cluster_store_loads_no_sticky_or_redis_code() -> None:
    seen = _imported_by("from storekit.reference import ClusterStore")
    modules: list[str] = seen["modules"]  # type: ignore[assignment]
    assert any(m.startswith("storekit.reference.cluster") for m in modules)
    assert not [m for m in modules if m.startswith(("storekit.reference.sticky", "storekit.reference.redis"))]


def test_an_unknown_name_of_storekit_reference_is_an_attribute_error() -> None:
    import storekit.reference

    with pytest.raises(AttributeError, match="no attribute 'NoSuchStore'"):
        storekit.reference.NoSuchStore  # noqa: B018
    assert "ClusterStore" in dir(storekit.reference)
