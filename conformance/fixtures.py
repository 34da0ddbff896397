"""The suite's fixtures, registered by the plugin only when ``--storekit`` is given.

Their names carry a ``storekit_`` prefix so that a store author's own
``store`` or ``target`` fixture in a root conftest.py never replaces them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from storekit.conformance._lab import ExpiryLab
from storekit.conformance._processes import Pool
from storekit.conformance._support import Stores, not_applicable
from storekit.target import Target


@pytest.fixture(scope="session")
def storekit_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The target under test, with its ``serve()`` entered once for the whole run."""
    target: Target = request.param
    with contextlib.ExitStack() as stack:
        if target.serve is not None:
            stack.enter_context(target.serve())
        yield target


@pytest.fixture
def storekit_stores(storekit_target: Target) -> Iterator[Stores]:
    """Makes stores from the target for one test, and closes them after it."""
    stores = Stores(storekit_target)
    try:
        yield stores
    finally:
        stores.close()


@pytest.fixture
def storekit_store(storekit_stores: Stores) -> Any:
    """A store built by the target's factory (async stores come wrapped for sync calls)."""
    return storekit_stores.new()


@pytest.fixture(scope="session")
def storekit_lab(storekit_target: Target, request: pytest.FixtureRequest) -> Iterator[ExpiryLab]:
    """Runs every selected expiry scenario at once, so the run waits out one TTL, not ten."""
    markers = (item.get_closest_marker("expiry") for item in request.session.items)
    lab = ExpiryLab(storekit_target)
    try:
        lab.run([marker.args[0] for marker in markers if marker is not None])
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="session")
def storekit_pool(storekit_target: Target) -> Iterator[Pool]:
    """Four worker processes, each with its own store from the target's factory."""
    if not storekit_target.shared:
        not_applicable("the target is not shared (Target(shared=True) runs these)")
    pool = Pool(storekit_target.factory, size=4)
    try:
        yield pool
    finally:
        pool.close()
