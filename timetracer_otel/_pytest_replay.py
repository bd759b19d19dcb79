"""Recorded traffic as pytest tests: ``pytest --timetracer-replay DIR --timetracer-app module:app`` collects one
test item per cassette of ``DIR``; each sends the cassette's recorded request to the app, in-process, with its
outbound calls answered from that cassette, and fails with the diff when the response drifted.

The pytest plugin wires this in: its ``pytest_addoption`` calls :func:`add_options` and its ``pytest_configure``
calls :func:`configure`. The module is a plugin on its own too (``-p timetracer_otel._pytest_replay``); both
functions do nothing the second time.

Items are children of one :class:`ReplayCollector`, whose ``setup()`` starts the app (installs the replay
runtime, imports the app, runs its lifespan) before the first of them and whose ``teardown()`` stops it after
the last, as pytest does for any shared node. Noise rules come from ``[tool.timetracer.replay]`` in the nearest
``pyproject.toml`` (see ``docs/replay-as-tests.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from timetracer_otel.cassette.files import iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import Cassette
from timetracer_otel.errors import CassetteError, CassetteNotFoundError, TimetracerError
from timetracer_otel.replay.compare import NoiseRules, load_noise_config
from timetracer_otel.replay.driver import AppDriver, unreplayable

__all__ = ["MARKER", "ReplayCollector", "ReplayItem", "ResponseDriftError", "add_options", "configure"]

#: The marker every replay item carries: ``-m timetracer_replay`` runs only them, ``-m "not ..."`` skips them.
MARKER = "timetracer_replay"
_PLUGIN = "timetracer-replay"
_OPTION = "--timetracer-replay"
_CONFIGURED = pytest.StashKey[bool]()


class ResponseDriftError(TimetracerError):
    """A replayed request's response differs from the recorded one; the message is the readable diff."""

    def __init__(self, cassette: str, lines: list[str]) -> None:
        self.cassette = cassette
        self.lines = tuple(lines)
        super().__init__("\n".join([f"the response differs from the one recorded in {cassette}:", *lines]))


def add_options(parser: pytest.Parser) -> None:
    """``--timetracer-replay DIR``, ``--timetracer-app MODULE:APP``, ``--timetracer-django-settings MODULE``."""
    group = parser.getgroup("timetracer", "timetracer cassettes")
    if any(_OPTION in option.names() for option in group.options):
        return  # added already (this module is both wired into the plugin and a plugin of its own)
    group.addoption(
        _OPTION, metavar="DIR", default=None,
        help="Replay every cassette of DIR (or one cassette file) against the app as a test item, comparing "
             "each response with the recorded one.")
    group.addoption(
        "--timetracer-app", metavar="MODULE:APP", default=None,
        help="The app --timetracer-replay drives, e.g. app:app or shop.wsgi:application (imported from the "
             "directory pytest runs in).")
    group.addoption(
        "--timetracer-django-settings", metavar="MODULE", default=None,
        help="DJANGO_SETTINGS_MODULE for --timetracer-replay (default: the environment's).")


def configure(config: pytest.Config) -> None:
    """Register the marker, and the collection of replay items when ``--timetracer-replay`` is given."""
    if config.stash.get(_CONFIGURED, False):
        return  # configured already (this module is both wired into the plugin and a plugin of its own)
    config.stash[_CONFIGURED] = True
    config.addinivalue_line("markers", f"{MARKER}: a recorded request replayed against the app (--timetracer-replay)")
    directory = config.getoption("timetracer_replay", None)
    if not directory:
        return
    app = config.getoption("timetracer_app", None)
    if not app:
        raise pytest.UsageError("--timetracer-replay needs --timetracer-app MODULE:APP, the app to replay against")
    source = Path(directory)
    if not source.is_absolute():
        source = config.invocation_params.dir / source
    if not source.exists():
        raise pytest.UsageError(f"--timetracer-replay: no cassettes at {directory}")
    try:
        rules = load_noise_config(config.invocation_params.dir).rules()
    except TimetracerError as exc:
        raise pytest.UsageError(str(exc)) from None
    driver = AppDriver(app, source, app_dir=config.invocation_params.dir,
                       django_settings=config.getoption("timetracer_django_settings", None))
    config.pluginmanager.register(_ReplayPlugin(source, driver, rules), _PLUGIN)


# As a plugin of its own (-p timetracer_otel._pytest_replay).
pytest_addoption = add_options
pytest_configure = configure


class _ReplayPlugin:
    def __init__(self, source: Path, driver: AppDriver, rules: NoiseRules) -> None:
        self.source = source
        self.driver = driver
        self.rules = rules

    @pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: they apply to replay items too
    def pytest_collection_modifyitems(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        collector = ReplayCollector.from_parent(session, name="replay", path=self.source, nodeid="replay",
                                                plugin=self)
        # Through the collection hooks, as pytest collects a file: the terminal counts the items, and a
        # collection error is reported (and stops the run) as any other.
        hook = session.ihook
        hook.pytest_collectstart(collector=collector)
        report = hook.pytest_make_collect_report(collector=collector)
        hook.pytest_collectreport(report=report)
        if report.passed:
            items.extend(node for node in report.result if isinstance(node, pytest.Item))


class ReplayCollector(pytest.Collector):
    """The parent of every replay item: the app runs from its setup to its teardown."""

    def __init__(self, *, plugin: _ReplayPlugin, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plugin = plugin

    def collect(self) -> list[ReplayItem]:
        source = self.plugin.source
        try:
            paths = [source] if source.is_file() else list(iter_cassette_files(source))
        except CassetteNotFoundError as exc:
            raise pytest.UsageError(str(exc)) from None
        loaded: list[tuple[float, str, Path, Cassette | None, str | None]] = []
        for path in paths:
            file = path.name if source.is_file() else path.relative_to(source).as_posix()
            try:
                cassette = load_cassette(path, check_bodies=True)
            except (CassetteError, OSError) as exc:
                loaded.append((0.0, file, path, None, str(exc)))
                continue
            if cassette.request is not None:  # a session cassette has none: its calls answer the app's start-up
                loaded.append((cassette.metadata.recorded_at.timestamp(), file, path, cassette, None))
        items = []
        for _, file, path, replayed, problem in sorted(loaded, key=lambda entry: entry[:2]):  # in recorded order
            name = f"{_describe(replayed)} [{file}]" if replayed is not None else f"(unreadable) [{file}]"
            item = ReplayItem.from_parent(self, name=name, path=path, cassette=replayed, file=file, problem=problem)
            item.add_marker(MARKER)
            items.append(item)
        return items

    def setup(self) -> None:
        try:
            self.plugin.driver.start()
        except TimetracerError as exc:
            problem = str(exc)
        else:
            return
        # The app cannot be loaded: say why, without a traceback (outside the except: no chained one either).
        pytest.fail(f"--timetracer-app {problem}", pytrace=False)

    def teardown(self) -> None:
        self.plugin.driver.close()


def _describe(cassette: Cassette) -> str:
    request = cassette.request
    assert request is not None
    route = request.route or urlsplit(request.url).path or "/"
    return f"{request.method} {route}"


class ReplayItem(pytest.Item):
    """One cassette: its recorded request replayed, the response compared with the recorded one."""

    def __init__(self, *, cassette: Cassette | None, file: str, problem: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cassette = cassette
        self.file = file
        self.problem = problem

    def runtest(self) -> None:
        if self.cassette is None:
            raise CassetteError(self.path, self.problem or "unreadable")
        skip = unreplayable(self.cassette)
        if skip is not None:
            pytest.skip(skip)
        assert isinstance(self.parent, ReplayCollector)
        plugin = self.parent.plugin
        comparison = plugin.driver.check(self.cassette, plugin.rules)
        if not comparison.ok:
            raise ResponseDriftError(self.file, comparison.render())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, TimetracerError):
            return str(excinfo.value)  # the diff, or why the app cannot be loaded: no traceback of ours
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"replay {self.name}"
