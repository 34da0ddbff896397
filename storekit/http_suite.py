"""The hooks of a run with ``--storekit-http=URL``: read each app's ``/features`` once,
collect the HTTP suite (``storekit.conformance.http``), parametrize it over the apps, and
report the ``http.*`` clauses as the store suite reports its own.

Installed by :func:`storekit.plugin.pytest_configure` only when URLs are given.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from storekit.clauses import HTTP_CLAUSES, HTTP_PROTOCOL
from storekit.known import KnownFailures
from storekit.report import Results, Verdict
from storekit.suite import SuiteCollector, SuitePlugin

__all__ = ["HttpResults", "HttpSuitePlugin", "HttpTarget"]


class HttpTarget:
    """An app under test: the URL of its probe routes and, once read, its ``/features``."""

    shared = False
    outage = None
    ttl_resolution = 0.0

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{url!r} is not an http:// or https:// URL; give the probe routes' prefix")
        self.url = url.rstrip("/")
        self.name = f"{parts.netloc}{parts.path.rstrip('/')}"
        self.features: Any = None

    def read_features(self) -> None:
        """GET ``/features``; ValueError saying what is wrong (unreachable, not a probe)."""
        import httpx

        from storekit.conformance.http._probe import Features

        try:
            response = httpx.get(f"{self.url}/features", timeout=10)
        except httpx.HTTPError as exc:
            raise ValueError(f"cannot reach {self.url}/features: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ValueError(
                f"{self.url}/features answered HTTP {response.status_code}; is this a probe app?"
            )
        try:
            self.features = Features.parse(response.json())
        except ValueError as exc:
            raise ValueError(f"{self.url}: {exc}") from None


class HttpCollector(SuiteCollector):
    package = "storekit.conformance.http"


class HttpResults(Results):
    """The verdicts of the ``http.*`` clauses; an app passes when none failed or was skipped."""

    def __init__(self, apps: list[HttpTarget], known: KnownFailures | None = None) -> None:
        super().__init__(apps, known)  # type: ignore[arg-type]  # an app has what Results reads of a target
        self.apps = apps

    def verdicts(self, target: Any) -> list[Verdict]:
        return [self._verdict(target, clause.id) for clause in HTTP_CLAUSES]

    def _unrun(self, target: Any, clause: str) -> tuple[str, str]:
        if clause in self._deselected[target.name]:
            return "skipped", "not selected in this run"
        return "skipped", "did not run"

    def levels(self, target: Any) -> dict[str, str]:
        verdicts = self.verdicts(target)
        bad = any(v.verdict in ("failed", "skipped", "known", "unexpected pass") for v in verdicts)
        return {"json": "fails" if bad else "passes"}

    def as_json(self) -> dict[str, Any]:
        found = super().as_json()
        found["suite"] = "http"
        found["protocol"] = HTTP_PROTOCOL
        for row, app in zip(found["targets"], self.apps, strict=True):
            row["url"] = app.url
            del row["shared"]
        return found

    def badge(self) -> tuple[str, str]:
        passes = all(self.levels(t)["json"] == "passes" for t in self.targets)
        return ("http: passes", "brightgreen") if passes else ("http: fails", "red")

    def title(self) -> str:
        return f"storekit HTTP session suite (probe protocol v{HTTP_PROTOCOL})"


class HttpSuitePlugin(SuitePlugin):
    collector = HttpCollector
    fixtures = "storekit.conformance.http.fixtures"
    option = "--storekit-http"
    target_fixture = "storekit_http"

    def make_results(self, known: KnownFailures | None) -> Results:
        return HttpResults(self.targets, known)

    def check_targets(self) -> None:
        for target in self.targets:
            try:
                target.read_features()
            except ValueError as exc:
                raise pytest.UsageError(f"--storekit-http={target.url}: {exc}") from None

    def header(self) -> list[str]:
        return [f"storekit: app {target.url} (probe protocol {HTTP_PROTOCOL})" for target in self.targets]
