"""``timetracer s3``: list, pull and push cassettes in S3 (``ls``, ``pull``, ``push``).

Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an
IAM role); the endpoint and region from options or the same variables the recorder reads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from timetracer_otel.cli._common import CliError, local_time
from timetracer_otel.cli._format import safe, table
from timetracer_otel.errors import CassetteNotFoundError, ConfigurationError
from timetracer_otel.s3.client import SSE_MODES, S3Options, describe_s3_error, make_client
from timetracer_otel.s3.location import S3Location
from timetracer_otel.s3.transfer import (
    Progress,
    S3Object,
    TransferReport,
    list_objects,
    local_cassette_files,
    pull,
    push,
    s3_error_types,
)
from timetracer_otel.settings import s3_options_from_env

__all__ = ["options_from_env", "s3_client", "s3_group"]

F = TypeVar("F", bound=Callable[..., Any])


def _envvars(name: str) -> list[str]:
    return [f"TIMETRACER_{name}", f"OTEL_TIMETRACER_{name}"]


def options_from_env(*, endpoint_url: str | None = None, region: str | None = None, sse: str | None = None,
                     sse_kms_key_id: str | None = None) -> S3Options:
    """S3 options from the arguments, else the ``TIMETRACER_S3_*`` variables, else boto3's defaults."""
    try:
        from_env = s3_options_from_env()
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    return replace(
        from_env,
        region=region or from_env.region,
        endpoint_url=endpoint_url or from_env.endpoint_url,
        sse=sse or from_env.sse,
        sse_kms_key_id=sse_kms_key_id or from_env.sse_kms_key_id,
    )


def _parse(url: str) -> S3Location:
    try:
        return S3Location.parse(url)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def s3_client(options: S3Options, workers: int = 8) -> Any:
    """The S3 client for ``options``; a missing boto3 or a malformed endpoint is a one-line error."""
    try:
        # A connection per worker: fewer would make urllib3 warn and reconnect for every object.
        return make_client(options, max_pool_connections=max(10, workers))
    except RuntimeError as exc:  # boto3 is not installed
        raise CliError(str(exc)) from None
    except ValueError as exc:  # botocore refuses the endpoint URL or region
        raise CliError(f"invalid S3 settings: {exc}") from None


@contextmanager
def _s3_errors(location: S3Location) -> Iterator[None]:
    """S3 refusing (credentials, no bucket, unreachable) becomes one line and exit 2, never a traceback."""
    try:
        yield
    except s3_error_types() as exc:
        raise CliError(describe_s3_error(exc, location)) from None


def _connection_options(function: F) -> F:
    function = click.option("--region", envvar=_envvars("S3_REGION"), metavar="REGION",
                            help="AWS region (default: $TIMETRACER_S3_REGION, else boto3's configuration).")(function)
    return click.option("--endpoint-url", envvar=_envvars("S3_ENDPOINT_URL"), metavar="URL",
                        help="An S3-compatible endpoint such as MinIO (default: $TIMETRACER_S3_ENDPOINT_URL).")(
        function)


def _transfer_options(function: F) -> F:
    function = click.option("--progress/--no-progress", default=None,
                            help="Show a progress bar on stderr (default: when stderr is a terminal).")(function)
    return click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True,
                        help="Objects copied in parallel.")(function)


@click.group("s3", short_help="List, pull and push cassettes in S3.")
def s3_group() -> None:
    """List, pull and push cassettes in S3 (or an S3-compatible store).

    Credentials come from boto3's chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an IAM role.
    """


@s3_group.command("ls")
@click.argument("url", metavar="S3_URL")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@_connection_options
def ls_command(url: str, as_json: bool, endpoint_url: str | None, region: str | None) -> None:
    """List the objects at S3_URL (s3://bucket/prefix): key relative to the prefix, size, last modified."""
    location = _parse(url)
    client = s3_client(options_from_env(endpoint_url=endpoint_url, region=region))
    with _s3_errors(location):
        objects = list(list_objects(client, location))
    if as_json:
        click.echo(json.dumps([_record(location, obj) for obj in objects], indent=2, ensure_ascii=False))
    elif objects:
        rows = [[local_time(obj.last_modified), str(obj.size), location.relative(obj.key)] for obj in objects]
        for line in table(("last modified", "size", "key"), rows, right={1}):
            click.echo(line)
    else:
        click.echo(f"no objects at {location}")


def _record(location: S3Location, obj: S3Object) -> dict[str, Any]:
    return {"key": location.relative(obj.key), "size": obj.size, "last_modified": obj.last_modified.isoformat(),
            "etag": obj.etag}


@contextmanager
def _progress_bar(label: str, total: int, show: bool | None) -> Iterator[Progress]:
    stderr = sys.stderr
    if show is None:
        show = stderr.isatty()
    if not show:
        yield lambda _n: None
        return
    with click.progressbar(length=total, label=label, file=stderr) as bar:
        # --progress on a stream that is no terminal (a CI log): draw anyway, as asked.
        bar._is_atty = True  # click has no public switch for this
        yield bar.update


def _finish(ctx: click.Context, verb: str, report: TransferReport) -> None:
    for key, problem in report.refused:
        click.echo(f"refused {safe(key)}: {safe(problem)}", err=True)
    for key, problem in report.failed:
        click.echo(f"failed {safe(key)}: {safe(problem)}", err=True)
    summary = f"{verb} {len(report.copied)}, skipped {len(report.skipped)} (already there), refused " \
              f"{len(report.refused)}"
    if report.failed:
        summary += f", failed {len(report.failed)}"
    click.echo(summary)
    if not report.ok:
        ctx.exit(1)


@s3_group.command("pull")
@click.argument("url", metavar="S3_URL")
@click.argument("destination", metavar="DEST", type=click.Path(file_okay=False, path_type=Path))
@_transfer_options
@_connection_options
@click.pass_context
def pull_command(ctx: click.Context, *, url: str, destination: Path, workers: int, progress: bool | None,
                 endpoint_url: str | None, region: str | None) -> None:
    """Download every object at S3_URL into DEST, keeping the key's path below the prefix.

    Files already in DEST with the same size and content are skipped, and a download is renamed into place
    only when complete, so pulling again resumes an interrupted pull. Keys that would land outside DEST (or
    that no cassette name looks like) are refused and named on stderr.

    Exit status: 0, 1 when some objects were refused or failed, 2 for a usage or S3 configuration error.
    """
    location = _parse(url)
    client = s3_client(options_from_env(endpoint_url=endpoint_url, region=region), workers)
    with _s3_errors(location):
        objects = list(list_objects(client, location))
    if not objects:
        raise CliError(f"no objects at {location}")
    total = sum(obj.size for obj in objects)
    try:
        with _progress_bar("pulling", total, progress) as tick:
            report = pull(client, location, destination, workers=workers, progress=tick, objects=objects)
    except OSError as exc:  # DEST cannot be created
        raise CliError(f"{destination}: {exc.strerror or exc}") from None
    _finish(ctx, "pulled", report)


@s3_group.command("push")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
@click.argument("url", metavar="S3_URL")
@_transfer_options
@click.option("--sse", type=click.Choice(SSE_MODES), envvar=_envvars("S3_SSE"),
              help="Server-side encryption of the objects written (default: $TIMETRACER_S3_SSE, else the "
                   "bucket's default).")
@click.option("--sse-kms-key-id", envvar=_envvars("S3_SSE_KMS_KEY_ID"), metavar="KEY",
              help="The KMS key for --sse aws:kms (default: $TIMETRACER_S3_SSE_KMS_KEY_ID).")
@_connection_options
@click.pass_context
def push_command(ctx: click.Context, *, directory: Path, url: str, workers: int, progress: bool | None,
                 sse: str | None, sse_kms_key_id: str | None, endpoint_url: str | None, region: str | None) -> None:
    """Upload every cassette file below DIR to S3_URL, keeping its path below DIR as the key below the prefix.

    Objects already there with the same size are skipped. Each object gets Content-Type application/json (and
    Content-Encoding gzip or zstd for compressed cassettes) and the server-side encryption asked for.

    Exit status: 0, 1 when some files were refused or failed, 2 for a usage or S3 configuration error.
    """
    location = _parse(url)
    if sse_kms_key_id and not (sse or "").startswith("aws:kms"):
        raise CliError("--sse-kms-key-id needs --sse aws:kms (or aws:kms:dsse)")
    if directory.exists() and not directory.is_dir():
        raise CliError(f"{directory} is not a directory")
    try:
        files = local_cassette_files(directory)
    except CassetteNotFoundError:
        raise CliError(f"no cassettes at {directory}") from None
    if not files:
        click.echo(f"no cassettes in {directory}")
        return
    options = options_from_env(endpoint_url=endpoint_url, region=region, sse=sse, sse_kms_key_id=sse_kms_key_id)
    client = s3_client(options, workers)
    total = sum(path.stat().st_size for path in files)
    with _s3_errors(location), _progress_bar("pushing", total, progress) as tick:
        report = push(client, directory, location, options, workers=workers, progress=tick, files=files)
    _finish(ctx, "pushed", report)
