"""The hooks of a run with ``--storekit``: check each target once, collect the
suite, parametrize it over the targets, attribute each report to its clause
(with the verdict a skip carries), and report at the end.

Installed by :func:`storekit.plugin.pytest_configure` only when targets are given.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import pytest

from storekit.known import KnownFailures
from storekit.report import REASON_PROPERTY, VERDICT_PROPERTY, Outcome, Results

SUITE_PACKAGE = "storekit.conformance"
MARKERS = {
    "clause(id)": "the contract clause a storekit conformance test checks",
    "expiry(scenario)": "a storekit conformance test whose scenario runs in the expiry lab",
}


class SuiteModule(pytest.Module):
    """A conformance module, imported by its package name and collected by
    storekit's own naming, whatever the user's python_files/python_functions."""

    def _getobj(self) -> Any:
        return importlib.import_module(self.name_in_package)

    @property
    def name_in_package(self) -> str:
        parent = self.parent
        package = parent.package if isinstance(parent, SuiteCollector) else SUITE_PACKAGE
        return f"{package}.{self.path.stem}"

    def funcnamefilter(self, name: str) -> bool:
        return name.startswith("test_")

    def classnamefilter(self, name: str) -> bool:
        return False


class SuiteCollector(pytest.Collector):
    """The root of the suite in the collection tree: ``storekit/<section>``, the modules
    of ``package`` (the store suite's, or the HTTP suite's)."""

    package = SUITE_PACKAGE

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("test_"):
                path = Path(package.__path__[0]) / f"{info.name}.py"
                section = info.name.removeprefix("test_")
                yield SuiteModule.from_parent(self, path=path, nodeid=f"{self.nodeid}/{section}")


class SuitePlugin:
    collector: type[SuiteCollector] = SuiteCollector
    fixtures = "storekit.conformance.fixtures"
    option = "--storekit"
    target_fixture = "storekit_target"

    def __init__(
        self,
        config: pytest.Config,
        targets: list[Any],
        specs: list[str],
        known: KnownFailures | None = None,
    ) -> None:
        self.config = config
        self.targets = _distinct_names(targets)
        self.specs = specs
        self.known = known
        self.results = self.make_results(known)

    def make_results(self, known: KnownFailures | None) -> Results:
        return Results(self.targets, known)

    @classmethod
    def install(
        cls,
        config: pytest.Config,
        targets: list[Any],
        specs: list[str],
        known: KnownFailures | None = None,
    ) -> None:
        for line in MARKERS.items():
            config.addinivalue_line("markers", ": ".join(line))
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            config.args = []  # no paths given: run the suite alone, not the tests around it
        config.pluginmanager.register(cls(config, targets, specs, known), "storekit-suite")
        config.pluginmanager.import_plugin(cls.fixtures)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self) -> None:
        """Check every target once, before anything runs: a broken one stops the run
        with a usage error that names it, instead of failing every test alike."""
        if self.config.option.collectonly:
            return
        self.check_targets()

    def check_targets(self) -> None:
        from storekit.conformance._target_check import BrokenTarget, check_target

        for target, spec in zip(self.targets, self.specs, strict=True):
            try:
                check_target(target)
            except BrokenTarget as exc:
                raise pytest.UsageError(f"--storekit={spec}: target {target.name!r}: {exc}") from None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Put the verdict that a suite skip carries into the report, as data."""
        report = yield
        from storekit.conformance._support import Skip

        raised = call.excinfo.value if call.excinfo is not None else None
        if isinstance(raised, Skip):
            report.user_properties += [(VERDICT_PROPERTY, raised.kind), (REASON_PROPERTY, raised.reason)]
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Generator[None, Any, Any]:
        report = yield
        if isinstance(collector, pytest.Session) and report.passed:
            report.result.append(self.collector.from_parent(collector, name="storekit", nodeid="storekit"))
        return report

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if self.target_fixture in metafunc.fixturenames:
            metafunc.parametrize(
                self.target_fixture,
                self.targets,
                ids=[target.name for target in self.targets],
                indirect=True,
                scope="session",
            )

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("clause")
            callspec = getattr(item, "callspec", None)
            if marker is None or callspec is None or self.target_fixture not in callspec.params:
                continue
            target = callspec.params[self.target_fixture]
            clause = str(marker.args[0])
            item.user_properties += [("storekit_target", target.name), ("storekit_clause", clause)]
            self.results.collected(target.name, clause)
            declared = self.known.get(clause) if self.known is not None else None
            if declared is not None:
                # A declared failure does not fail the run; its clause's verdict says "known".
                item.add_marker(
                    pytest.mark.xfail(reason=f"known failure {clause}: {declared.reason}", strict=False)
                )

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        for item in items:
            props = {key: str(value) for key, value in item.user_properties}
            if "storekit_target" in props:
                self.results.deselected(props["storekit_target"], props["storekit_clause"])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = {key: str(value) for key, value in report.user_properties}
        target = props.get("storekit_target")
        if target is None:
            return
        outcome = Outcome.from_report(report)
        if outcome is None:
            return
        self.results.add(target, props["storekit_clause"], outcome)

    def pytest_report_header(self) -> list[str]:
        return self.header()

    def header(self) -> list[str]:
        lines = [
            f"storekit: target {target.name} ({spec}), shared={target.shared}, "
            f"ttl_resolution={target.ttl_resolution}s"
            for target, spec in zip(self.targets, self.specs, strict=True)
        ]
        if self.known is not None:
            declared = ", ".join(self.known.entries) or "none"
            lines.append(f"storekit: known failures from {self.known.path}: {declared}")
        return lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.config.option.collectonly:
            return
        terminalreporter.section(self.results.title())
        for line in self.results.table():
            terminalreporter.line(line)

    def pytest_sessionfinish(self) -> None:
        if self.config.option.collectonly:
            return  # nothing ran: keep whatever report and badge a real run wrote
        report_path = self.config.getoption("storekit_report")
        badge_path = self.config.getoption("storekit_badge")
        if report_path:
            self.results.write_json(Path(report_path))
        if badge_path:
            self.results.write_badge(Path(badge_path))


def _distinct_names(targets: list[Any]) -> list[Any]:
    seen: dict[str, int] = {}
    for target in targets:
        count = seen[target.name] = seen.get(target.name, 0) + 1
        if count > 1:
            target.name = f"{target.name}#{count}"
    return targets
