"""The expiry lab: clauses that must wait for a session to expire run side by side.

Expiry is tested with real time, so each such clause waits at least
``expires + ttl_resolution``. Run one after the other that is a dozen waits;
the lab starts them all at once in threads, each on its own store, and each
test then reports its own scenario's outcome. A scenario that calls
``length()`` or ``all()`` needs a store nobody else writes to: where the
target cannot give one (a shared store without namespaces), those scenarios
run one at a time after the rest.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pytest

from storekit.conformance._support import MARGIN, Stores
from storekit.target import Target

_Failure = tuple[type[BaseException], BaseException, TracebackType | None]


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Lab], None]
    exclusive: bool = False

    @property
    def name(self) -> str:
        return self.run.__name__


def scenario(*, exclusive: bool = False) -> Callable[[Callable[[Lab], None]], Scenario]:
    """Declare an expiry scenario; ``exclusive`` if it counts sessions."""
    return lambda fn: Scenario(fn, exclusive)


class Lab:
    """What a scenario gets: the target, stores, and the expiry window."""

    def __init__(self, target: Target, stores: Stores, exclusive: bool) -> None:
        self.target = target
        self._stores = stores
        self._exclusive = exclusive
        self.resolution = target.ttl_resolution

    @property
    def lead(self) -> float:
        """How far ahead an expiry must be for the session to be visible now."""
        return self.resolution + MARGIN

    def store(self) -> Any:
        return self._stores.isolated() if self._exclusive else self._stores.new()


class ExpiryLab:
    def __init__(self, target: Target) -> None:
        self.target = target
        self._stores = Stores(target)
        self._lock = threading.Lock()
        self._outcomes: dict[Scenario, _Failure | None] = {}

    def run(self, scenarios: list[Scenario | None]) -> None:
        wanted = sorted({s for s in scenarios if s is not None}, key=lambda s: s.name)
        isolated = self.target.namespaced is not None or not self.target.shared
        together = [s for s in wanted if isolated or not s.exclusive]
        alone = [s for s in wanted if s not in together]
        if together:
            with ThreadPoolExecutor(max_workers=len(together), thread_name_prefix="storekit-lab") as pool:
                list(pool.map(self._attempt, together))
        for each in alone:
            self._attempt(each)

    def _attempt(self, scenario: Scenario) -> None:
        try:
            scenario.run(Lab(self.target, self._stores, scenario.exclusive))
        except BaseException:
            outcome: _Failure | None = sys.exc_info()  # type: ignore[assignment]
        else:
            outcome = None
        with self._lock:
            self._outcomes[scenario] = outcome

    def replay(self, scenario: Scenario) -> None:
        """Raise what the scenario raised (a failure, a skip), or return if it passed."""
        __tracebackhide__ = True
        if scenario not in self._outcomes:
            self._attempt(scenario)
        outcome = self._outcomes[scenario]
        if outcome is not None:
            raise outcome[1].with_traceback(outcome[2])

    def close(self) -> None:
        self._stores.close()


def expiry(scenario: Scenario) -> pytest.MarkDecorator:
    """Mark a test as reporting the outcome of an expiry scenario."""
    return pytest.mark.expiry(scenario)
