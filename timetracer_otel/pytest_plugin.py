"""The pytest plugin (``pytest11`` entry point): cassettes for tests, as VCR.py users know them, for the whole
stack (HTTP, SQL, Redis, MongoDB).

- ``@pytest.mark.timetracer`` (``cassette=``, ``record_mode=``, ``allow_playback_repeats=``, ``match_on=``) and
  the ``timetracer_cassette`` fixture put a test in its cassette, ``cassettes/<test module>/<test name>.json``
  next to the test file; ``timetracer_replay(path)``, ``timetracer_record(path)`` and ``timetracer_auto(path)``
  give context managers for explicit paths.
- ``--timetracer-record-mode`` (default ``once``, ``none`` when ``CI`` is set), ``--timetracer-allow-hosts``,
  ``--timetracer-fail-unused``.
- A replay miss fails the test with the mismatch and its nearest recorded calls, even when the app under test
  turned it into a 500; the terminal summary lists what each test replayed, recorded and left unused.
- ``--timetracer-replay DIR --timetracer-app module:app`` turns recorded traffic into tests (see
  :mod:`timetracer_otel._pytest_replay`).

Nothing is installed until a test uses a cassette, so a test run that uses none is not changed.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from timetracer_otel._pytest_replay import add_options as add_replay_options
from timetracer_otel._pytest_replay import configure as configure_replay
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.testing import CassetteUse, RecordMode, use_cassette

__all__ = ["cassette_path_for", "default_record_mode"]

_USE = pytest.StashKey[CassetteUse]()
_PROPERTY = "timetracer"
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._\-\[\]]+")

CassetteFactory = Callable[..., AbstractContextManager[CassetteUse]]


def default_record_mode(environ: dict[str, str] | None = None) -> RecordMode:
    """``once``, except under CI (``CI`` set to anything but empty, ``0`` or ``false``): ``none``, so a CI run
    never quietly calls live services."""
    value = (os.environ if environ is None else environ).get("CI", "").strip().lower()
    return RecordMode.NONE if value not in ("", "0", "false", "no") else RecordMode.ONCE


def cassette_path_for(item: pytest.Item, name: str | None = None) -> Path:
    """``cassettes/<test module>/<test name>.json`` next to the test file (a class-based test's name is
    ``Class.test``; parametrized ids are kept, made file-safe). ``name`` replaces the test's name; an absolute
    ``name`` is used as it is."""
    if name is not None and Path(name).is_absolute():
        return Path(name)
    folder = item.path.parent / "cassettes" / item.path.stem
    if name is None:
        test = item.nodeid.split("::", 1)[-1].replace("::", ".")
        name = _FILE_SAFE.sub("_", test)[:180]
    return folder / (name if name.endswith(".json") else f"{name}.json")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("timetracer", "timetracer cassettes")
    group.addoption(
        "--timetracer-record-mode", choices=[mode.value for mode in RecordMode], default=None,
        help="none: replay only; once: record missing cassettes (the default, 'none' when CI is set); "
             "new_episodes: replay and record new HTTP calls; all: record everything, appending; "
             "rewrite: record everything, replacing the cassette.")
    group.addoption(
        "--timetracer-allow-hosts", default="", metavar="HOSTS",
        help="Comma-separated hosts a replaying test may still connect to (loopback always may).")
    group.addoption(
        "--timetracer-fail-unused", action="store_true", default=False,
        help="Fail a test whose cassette holds interactions it never used (a stale cassette).")
    add_replay_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "timetracer(cassette=None, record_mode=None, allow_playback_repeats=False, match_on=None): run the test "
        "in its cassette (recorded on the first run, replayed after).")
    config.pluginmanager.register(_Summary(), "timetracer-summary")
    configure_replay(config)


def _record_mode(config: pytest.Config, wanted: str | None = None) -> RecordMode:
    """The marker's mode, else the command line's, else the default."""
    chosen = wanted or config.getoption("--timetracer-record-mode")
    return RecordMode(chosen) if chosen else default_record_mode()


def _allow_hosts(config: pytest.Config) -> tuple[str, ...]:
    value: str = config.getoption("--timetracer-allow-hosts")
    return tuple(host.strip() for host in value.split(",") if host.strip())


def _open(item: pytest.Item, path: Path, record_mode: RecordMode, **options: Any) -> Iterator[CassetteUse]:
    """Run the rest of the test in the cassette at ``path``; what happened is reported in the summary."""
    with use_cassette(path, record_mode=record_mode, allow_hosts=_allow_hosts(item.config), **options) as use:
        item.stash[_USE] = use
        yield use
    unused = len(use.unused())
    shown = os.path.relpath(path, item.config.rootpath) if path.is_relative_to(item.config.rootpath) else path
    item.user_properties.append((_PROPERTY, {
        "cassette": str(shown), "action": use.action, "replayed": use.replayed, "recorded": use.recorded,
        "unused": unused,
    }))


@pytest.fixture
def timetracer_cassette(request: pytest.FixtureRequest) -> Iterator[CassetteUse]:
    """The test's cassette, as the ``timetracer`` marker (if any) configures it."""
    marker = request.node.get_closest_marker("timetracer")
    options = dict(marker.kwargs) if marker is not None else {}
    path = cassette_path_for(request.node, options.pop("cassette", None))
    mode = _record_mode(request.config, options.pop("record_mode", None))
    yield from _open(request.node, path, mode, **options)


@pytest.fixture(autouse=True)
def _timetracer_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Puts a test marked ``timetracer`` in its cassette before any other fixture of it runs."""
    if request.node.get_closest_marker("timetracer") is None or "timetracer_cassette" in request.fixturenames:
        yield
        return
    request.getfixturevalue("timetracer_cassette")
    yield


def _factory(request: pytest.FixtureRequest, mode: RecordMode | None) -> CassetteFactory:
    def open_cassette(path: str | os.PathLike[str], **options: Any) -> AbstractContextManager[CassetteUse]:
        resolved = Path(path) if Path(path).is_absolute() else request.node.path.parent / path
        chosen = mode if mode is not None else _record_mode(request.config, options.pop("record_mode", None))
        return contextlib.contextmanager(_open)(request.node, resolved, chosen, **options)

    return open_cassette


@pytest.fixture
def timetracer_replay(request: pytest.FixtureRequest) -> CassetteFactory:
    """``with timetracer_replay("cassettes/x.json"):`` replays only (record mode ``none``); relative paths are
    relative to the test file."""
    return _factory(request, RecordMode.NONE)


@pytest.fixture
def timetracer_record(request: pytest.FixtureRequest) -> CassetteFactory:
    """``with timetracer_record("cassettes/x.json"):`` records afresh (record mode ``rewrite``)."""
    return _factory(request, RecordMode.REWRITE)


@pytest.fixture
def timetracer_auto(request: pytest.FixtureRequest) -> CassetteFactory:
    """``with timetracer_auto("cassettes/x.json"):`` replays when the cassette exists, else records it."""
    return _factory(request, RecordMode.ONCE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    """A replay miss the code under test swallowed (an app answering 500) fails the test with the mismatch;
    with ``--timetracer-fail-unused``, so does a cassette holding calls the test never made."""
    outcome = yield
    use = item.stash.get(_USE, None)
    if use is None:
        return
    raised = outcome.excinfo[1] if outcome.excinfo is not None else None
    if use.misses and not isinstance(raised, ReplayMismatchError):
        outcome.force_exception(use.misses[0])
    elif raised is None and use.action == "replay" and item.config.getoption("--timetracer-fail-unused"):
        try:
            use.check_unused()
        except Exception as stale:
            outcome.force_exception(stale)


class _Summary:
    """Collects what each test did with its cassette, where the reports arrive (on the controller under
    pytest-xdist too: ``user_properties`` travel with the reports), and prints it at the end."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            self.entries += [(report.nodeid, value) for name, value in report.user_properties
                             if name == _PROPERTY and isinstance(value, dict)]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.entries:
            return
        terminalreporter.section("timetracer")
        for nodeid, entry in self.entries:
            terminalreporter.write_line(
                f"{nodeid}: {entry['action']} {entry['cassette']} - replayed {entry['replayed']}, "
                f"recorded {entry['recorded']}, unused {entry['unused']}")
