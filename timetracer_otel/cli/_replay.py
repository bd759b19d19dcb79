"""``timetracer replay``: every recorded request sent to the app again, in-process, with its outbound calls
answered from its cassette; the response compared with the recorded one."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import click

from timetracer_otel.cassette.files import iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import Cassette
from timetracer_otel.cli._common import CliError, method_of, sort_key_time
from timetracer_otel.cli._format import safe
from timetracer_otel.cli._list import _default_directory
from timetracer_otel.errors import CassetteError, CassetteNotFoundError, TimetracerError
from timetracer_otel.replay.compare import Noise, NoiseConfig, NoiseRules, compare, load_noise_config, parse_paths
from timetracer_otel.replay.driver import AppDriver, Interface, unreplayable

__all__ = ["replay_command"]

_INDENT = "      "


@dataclass(frozen=True)
class _Case:
    cassette: Cassette
    #: The cassette file, relative to the directory replayed.
    file: str
    method: str
    target: str
    skip: str | None


def _target(cassette: Cassette) -> str:
    """Path and query of the inbound request (``-`` for a cassette without one)."""
    if cassette.request is None:
        return "-"
    parts = urlsplit(cassette.request.url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _cases(source: Path) -> list[_Case]:
    """Every cassette of ``source`` (a directory, or one file), in recorded order."""
    try:
        paths = [source] if source.is_file() else list(iter_cassette_files(source))
    except CassetteNotFoundError:
        raise CliError(f"no cassettes at {source}") from None
    cases = []
    for path in paths:
        try:
            cassette = load_cassette(path, check_bodies=True)
        except CassetteError as exc:
            raise CliError(f"{path}: {exc.problem}") from None
        except OSError as exc:
            raise CliError(f"{path}: {exc.strerror or exc}") from None
        file = path.name if source.is_file() else path.relative_to(source).as_posix()
        cases.append(_Case(cassette, file, method_of(cassette.request), _target(cassette), unreplayable(cassette)))
    cases.sort(key=lambda c: (sort_key_time(c.cassette.metadata.recorded_at), c.file))
    return cases


def _rules(config: NoiseConfig, headers: tuple[str, ...], paths: tuple[str, ...]) -> NoiseRules:
    return config.rules(headers, parse_paths(paths, "--ignore-path"))


class _Lines:
    """One aligned line per cassette, printed as each one finishes."""

    def __init__(self, cases: list[_Case]) -> None:
        self.method = max(len(c.method) for c in cases)
        self.target = max(len(safe(c.target)) for c in cases)

    def line(self, verdict: str, case: _Case, detail: str = "") -> str:
        text = f"{verdict:<4}  {case.method:<{self.method}}  {safe(case.target):<{self.target}}  {safe(case.file)}"
        return text + (f"  ({detail})" if detail else "")


@click.command(name="replay", short_help="Replay recorded requests against the app; diff the responses.")
@click.argument("source", required=False, type=click.Path(path_type=Path))
@click.option("--app", "app_spec", required=True, metavar="MODULE:APP",
              help="The app to drive, named as uvicorn names it: app:app, shop.wsgi:application.")
@click.option("--app-dir", type=click.Path(path_type=Path, file_okay=False), default=".", show_default=True,
              help="Directory put first on sys.path to import the app from.")
@click.option("--interface", type=click.Choice([i.value for i in Interface]), default=Interface.AUTO.value,
              show_default=True, help="Whether the app is ASGI or WSGI (auto tells them apart).")
@click.option("--django-settings", metavar="MODULE",
              help="DJANGO_SETTINGS_MODULE of a Django project (default: the environment's).")
@click.option("--ignore-header", "ignore_headers", multiple=True, metavar="NAME",
              help="A response header not to compare (repeatable); date, server, content-length and hop-by-hop "
                   "headers never are.")
@click.option("--ignore-path", "ignore_paths", multiple=True, metavar="JSONPATH",
              help="A field of JSON bodies not to compare, e.g. '$.created_at', '$.items[*].id', '$..id' (repeatable).")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="TOML file with a [tool.timetracer.replay] table (default: the nearest pyproject.toml).")
@click.option("--detect-noise", is_flag=True,
              help="Replay every cassette twice and print the fields that differ between the two runs, as a "
                   "[tool.timetracer.replay] table.")
def replay_command(
    *,
    source: Path | None,
    app_spec: str,
    app_dir: Path,
    interface: str,
    django_settings: str | None,
    ignore_headers: tuple[str, ...],
    ignore_paths: tuple[str, ...],
    config_file: Path | None,
    detect_noise: bool,
) -> None:
    """Replay the recorded requests in SOURCE against the app and compare its responses with the recorded ones.

    SOURCE is a directory of cassettes (default: $TIMETRACER_DIR, else ./cassettes) or one cassette file. The
    app runs in this process; each request's outbound calls are answered from its own cassette. Exit status:
    0 when every response matches, 1 when one differs, 2 for a usage or configuration error.
    """
    source = source if source is not None else _default_directory()
    try:
        config = load_noise_config(Path.cwd(), config_file)
        rules = _rules(config, ignore_headers, ignore_paths)
    except TimetracerError as exc:
        raise CliError(str(exc)) from None
    cases = _cases(source)
    runnable = [c for c in cases if c.skip is None]
    if not runnable:
        click.echo(f"no request cassettes to replay in {safe(str(source))}")
        return
    driver = AppDriver(app_spec, source, interface=Interface(interface), app_dir=app_dir,
                       django_settings=django_settings)
    try:
        driver.start()
    except TimetracerError as exc:
        raise CliError(str(exc)) from None
    try:
        if detect_noise:
            _detect_noise(driver, runnable, config, ignore_headers, ignore_paths)
        else:
            failed = _replay(driver, cases, rules)
            if failed:
                click.get_current_context().exit(1)
    finally:
        driver.close()


def _replay(driver: AppDriver, cases: list[_Case], rules: NoiseRules) -> int:
    started = time.perf_counter()
    lines = _Lines(cases)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in cases:
        if case.skip is not None:
            counts["skipped"] += 1
            click.echo(lines.line("SKIP", case, case.skip))
            continue
        comparison = driver.check(case.cassette, rules)
        counts["passed" if comparison.ok else "failed"] += 1
        click.echo(lines.line("PASS" if comparison.ok else "FAIL", case))
        for detail in comparison.render():
            click.echo(f"{_INDENT}{detail}")
    summary = ", ".join(f"{n} {label}" for label, n in counts.items() if n or label != "skipped")
    click.echo(f"\n{summary} in {time.perf_counter() - started:.2f} s")
    return counts["failed"]


def _detect_noise(
    driver: AppDriver,
    cases: list[_Case],
    config: NoiseConfig,
    ignore_headers: tuple[str, ...],
    ignore_paths: tuple[str, ...],
) -> None:
    """Two passes over every cassette (far apart in time, so second-resolution timestamps differ too); the
    differences between a cassette's two live answers are its noise."""
    first = [driver.replay(case.cassette).answer() for case in cases]
    second = [driver.replay(case.cassette).answer() for case in cases]
    noise = Noise()
    lines = _Lines(cases)
    click.echo(f"replayed {len(cases)} cassette(s) twice; what differs between the two runs:")
    for case, one, two in zip(cases, first, second, strict=True):
        # The headers never compared are not noise to report.
        found = noise.add(compare(one, two, NoiseRules.build()), f"{case.method} {case.target} ({case.file})")
        click.echo(lines.line("DIFF" if found else "SAME", case, ", ".join(found)))
    if not (noise.headers or noise.paths or noise.other):
        click.echo("\nno field differs between the two runs: nothing to ignore")
        return
    if noise.other:
        click.echo("\nthese differ too, and no header name or JSON path can hide them:")
        for line in noise.other:
            click.echo(f"  {safe(line)}")
    configured = [*config.headers, *ignore_headers]
    paths = [*(str(p) for p in config.paths), *ignore_paths]
    where = f" ({config.source})" if config.source is not None else ""
    click.echo(f"\nto ignore them, put this in pyproject.toml{where} (it keeps what is configured already):\n")
    for line in noise.proposal(configured, paths):
        click.echo(safe(line))
