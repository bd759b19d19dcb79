"""``timetracer s3 ls|pull|push``, ``timetracer list s3://...`` and replay's S3 cache, against real S3 servers.

SeaweedFS (the run's S3 server) for everything it stores; moto's server for keys SeaweedFS refuses to store
(``..`` segments, absolute keys), which a hostile or broken bucket could still hold.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner, Result

from tests.factories import cassette, interaction, json_response, request
from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY
from tests.s3server import client as s3client
from tests.servers import BIN, ServerProcess, free_port
from timetracer_otel.cassette.files import cassette_relative_path, dump_cassette, iter_cassette_files
from timetracer_otel.cassette.model import Cassette, Metadata
from timetracer_otel.cli import main
from timetracer_otel.errors import CassetteNotFoundError
from timetracer_otel.replay.source import CassetteSource
from timetracer_otel.s3.cache import S3SourceError, materialize
from timetracer_otel.s3.client import S3Options, make_client
from timetracer_otel.s3.location import S3Location, UnsafeKeyError, local_path_for
from timetracer_otel.s3.transfer import object_arguments, pull
from timetracer_otel.settings import Compression

DAY = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
#: Keys SeaweedFS stores but no cassette name looks like; pull must refuse each.
ODD_KEYS = ("%2e%2e/x.json", "\x01x.json", "C:/x.json", " leading.json")
#: Keys that climb out of the destination; moto stores them.
TRAVERSAL_KEYS = ("p/../evil.json", "p/a/../../evil.json", "p//abs.json", "p/./dot.json", "p/..\\evil.json")


# --- cassettes -----------------------------------------------------------------------------------------------------

def request_cassette(n: int, *, day: int = 0) -> Cassette:
    """A distinct request cassette: its own id, route and day."""
    base = cassette(interaction(request("GET", f"http://api.test/items/{n}"), json_response({"n": n})),
                    inbound=request("GET", f"http://app.test/items/{n}"), recorded_at=DAY + timedelta(days=day))
    return msgspec.structs.replace(base, metadata=msgspec.structs.replace(base.metadata, id=uuid.uuid4().hex))


def session_cassette(*, day: int = 0) -> Cassette:
    return Cassette(
        metadata=Metadata(id=uuid.uuid4().hex, recorded_at=DAY + timedelta(days=day), service="shop",
                          tool_version="0.1.0", scope="session"),
        request=None,
        interactions=(interaction(request("GET", "http://config.test/flags"), json_response({"beta": True})),),
    )


def files_of(items: list[tuple[Cassette, Compression]]) -> dict[str, bytes]:
    """Relative path -> bytes, as the recorder would write them."""
    return {cassette_relative_path(c, compression): dump_cassette(c, compression) for c, compression in items}


def write_tree(directory: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def mixed(n: int = 3) -> dict[str, bytes]:
    """``n`` request cassettes over two days, plain, gzip and zstd, and one session cassette."""
    kinds = (Compression.NONE, Compression.GZIP, Compression.ZSTD)
    items = [(request_cassette(i, day=i % 2), kinds[i % 3]) for i in range(n)]
    return files_of([*items, (session_cassette(), Compression.NONE)])


# --- fixtures ------------------------------------------------------------------------------------------------------

@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    return s3client(s3_endpoint)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, tmp_path: Path) -> Path:
    """Credentials and endpoint through boto3's normal chain, and a private S3 cache (returned)."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN",
                 "TIMETRACER_S3_REGION", "TIMETRACER_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("TIMETRACER_S3_ENDPOINT_URL", s3_endpoint)
    cache = tmp_path / "cache"
    monkeypatch.setenv("TIMETRACER_S3_CACHE_DIR", str(cache))
    return cache


def put_tree(s3: Any, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{relative}" if prefix else relative, Body=data)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def options_for(endpoint: str, cache: Path) -> S3Options:
    return S3Options(endpoint_url=endpoint, region=REGION, cache_dir=cache)


# --- push, ls, pull ------------------------------------------------------------------------------------------------

def test_push_then_ls_then_pull_round_trips_byte_identical(env: Path, s3: Any, s3_bucket: str,
                                                           tmp_path: Path) -> None:
    files = mixed()
    write_tree(tmp_path / "local", files)

    pushed = run("s3", "push", str(tmp_path / "local"), f"s3://{s3_bucket}/rec")
    assert (pushed.exit_code, pushed.stdout) == (0, "pushed 4, skipped 0 (already there), refused 0\n")
    for relative in files:
        head = s3.head_object(Bucket=s3_bucket, Key=f"rec/{relative}")
        assert head["ContentType"] == "application/json"
        assert head.get("ContentEncoding") == {".gz": "gzip", ".zst": "zstd"}.get(Path(relative).suffix)

    listed = run("s3", "ls", f"s3://{s3_bucket}/rec")
    assert listed.exit_code == 0
    assert listed.stdout.splitlines()[0].split() == ["last", "modified", "size", "key"]
    assert sorted(line.split()[-1] for line in listed.stdout.splitlines()[1:]) == sorted(files)
    as_json = json.loads(run("s3", "ls", "--json", f"s3://{s3_bucket}/rec").stdout)
    assert {o["key"]: o["size"] for o in as_json} == {k: len(v) for k, v in files.items()}

    pulled = run("s3", "pull", f"s3://{s3_bucket}/rec", str(tmp_path / "copy"))
    assert (pulled.exit_code, pulled.stdout, pulled.stderr) == (0, "pulled 4, skipped 0 (already there), "
                                                                   "refused 0\n", "")
    assert tree(tmp_path / "copy") == files
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "copy").rglob("*")} == {0o600, 0o700}

    again = run("s3", "push", str(tmp_path / "local"), f"s3://{s3_bucket}/rec")
    assert again.stdout == "pushed 0, skipped 4 (already there), refused 0\n"


def test_push_refuses_a_symlink_leading_out_of_the_directory(env: Path, s3: Any, s3_bucket: str,
                                                             tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.json"
    secret.parent.mkdir()
    secret.write_text("{}")
    write_tree(tmp_path / "local", mixed(1))
    (tmp_path / "local" / "2026-11-29" / "link.json").symlink_to(secret)

    # Two workers: SeaweedFS takes a second over more concurrent first writes to a new bucket.
    result = run("s3", "push", "--workers", "2", str(tmp_path / "local"), f"s3://{s3_bucket}/rec")

    assert result.exit_code == 1
    assert result.stdout == "pushed 2, skipped 0 (already there), refused 1\n"
    assert "refused rec/2026-11-29/link.json: it resolves outside" in result.stderr
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert len(keys) == 2 and not any("link" in key for key in keys)


def test_pull_skips_what_is_there_and_resumes(env: Path, s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    files = files_of([(request_cassette(i), Compression.NONE) for i in range(5)])
    put_tree(s3, s3_bucket, "p", files)
    dest = tmp_path / "dest"
    assert run("s3", "pull", f"s3://{s3_bucket}/p", str(dest)).exit_code == 0
    gone, stale, edited = sorted(files)[:3]
    # Interrupted mid-download: the file missing, a half-written part file left beside it.
    (dest / gone).unlink()
    (dest / gone).with_name(f".{Path(gone).name}.part").write_bytes(b"half a cas")
    (dest / stale).with_name(f".{Path(stale).name}.part").write_bytes(b"older")
    # Changed locally with the same size: the MD5 ETag tells, the size alone would not.
    (dest / edited).write_bytes(files[edited].replace(b"items", b"ITEMS"))

    result = run("s3", "pull", f"s3://{s3_bucket}/p", str(dest))

    assert (result.exit_code, result.stdout) == (0, "pulled 2, skipped 3 (already there), refused 0\n")
    assert tree(dest) == files  # no part file left either


def test_parallel_pull_of_many_objects_with_a_progress_bar(env: Path, s3: Any, s3_bucket: str,
                                                           tmp_path: Path) -> None:
    files = files_of([(request_cassette(i, day=i % 4), Compression.GZIP) for i in range(40)])
    put_tree(s3, s3_bucket, "many/svc", files)

    result = run("s3", "pull", "--workers", "8", "--progress", f"s3://{s3_bucket}/many", str(tmp_path / "d"))

    assert result.exit_code == 0
    assert result.stdout == "pulled 40, skipped 0 (already there), refused 0\n"
    assert "pulling" in result.stderr and "100%" in result.stderr
    assert tree(tmp_path / "d") == {f"svc/{k}": v for k, v in files.items()}
    quiet = run("s3", "pull", "--no-progress", f"s3://{s3_bucket}/many", str(tmp_path / "d"))
    assert (quiet.stdout, quiet.stderr) == ("pulled 0, skipped 40 (already there), refused 0\n", "")


def test_pull_of_a_single_key(env: Path, s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    files = mixed(2)
    put_tree(s3, s3_bucket, "p", files)
    key = next(k for k in files if k.endswith(".json") and not k.startswith("_session"))

    result = run("s3", "pull", f"s3://{s3_bucket}/p/{key}", str(tmp_path / "one"))

    assert result.exit_code == 0
    assert tree(tmp_path / "one") == {Path(key).name: files[key]}


# --- path traversal ------------------------------------------------------------------------------------------------

def outside(root: Path, dest: Path) -> set[str]:
    """Every file below ``root`` that is not below ``dest``."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and dest not in p.parents}


def test_pull_refuses_odd_keys_and_pulls_the_rest(env: Path, s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    files = mixed(2)
    put_tree(s3, s3_bucket, "p", files)
    for key in ODD_KEYS:
        s3.put_object(Bucket=s3_bucket, Key=f"p/{key}", Body=b"{}")
    work = tmp_path / "work"
    dest = work / "dest"
    before = outside(tmp_path, dest)

    result = run("s3", "pull", f"s3://{s3_bucket}/p", str(dest))

    assert result.exit_code == 1
    assert result.stdout == f"pulled {len(files)}, skipped 0 (already there), refused 4\n"
    refusals = result.stderr.splitlines()
    assert len(refusals) == 4 and all(line.startswith("refused p/") for line in refusals)
    for text in ("p/%2e%2e/x.json", "p/\\x01x.json", "p/C:/x.json", "p/ leading.json"):
        assert any(line.startswith(f"refused {text}: ") for line in refusals), text
    assert tree(dest) == files
    assert outside(tmp_path, dest) == before


def test_pull_refuses_a_key_through_a_symlink_out_of_dest(env: Path, s3: Any, s3_bucket: str,
                                                          tmp_path: Path) -> None:
    s3.put_object(Bucket=s3_bucket, Key="p/link/evil.json", Body=b"{}")
    s3.put_object(Bucket=s3_bucket, Key="p/ok.json", Body=b"{}")
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    (dest / "link").symlink_to(elsewhere)

    result = run("s3", "pull", f"s3://{s3_bucket}/p", str(dest))

    assert result.exit_code == 1
    assert "refused p/link/evil.json: it resolves outside" in result.stderr
    assert list(elsewhere.iterdir()) == [] and (dest / "ok.json").read_bytes() == b"{}"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server (in memory, no auth): it stores the ``..`` and absolute keys SeaweedFS refuses."""
    port = free_port()
    directory = tmp_path_factory.mktemp("moto")
    with ServerProcess([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port=port, cwd=directory,
                       log=directory / "moto.log"):
        yield f"http://127.0.0.1:{port}"


def test_pull_refuses_traversal_keys(moto: str, env: Path, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    monkeypatch.setenv("TIMETRACER_S3_ENDPOINT_URL", moto)
    s3 = s3client(moto)
    s3.create_bucket(Bucket="hostile")
    good = mixed(1)
    put_tree(s3, "hostile", "p", good)
    for key in (*TRAVERSAL_KEYS, "../evil.json", "/abs.json"):
        s3.put_object(Bucket="hostile", Key=key, Body=b'{"evil": true}')
    stored = {o["Key"] for o in s3.list_objects_v2(Bucket="hostile")["Contents"]}
    assert {*TRAVERSAL_KEYS, "../evil.json", "/abs.json"} <= stored  # the server really holds them
    work = tmp_path / "work"
    dest = work / "a" / "dest"
    before = outside(tmp_path, dest)

    below_prefix = run("s3", "pull", "s3://hostile/p", str(dest))
    whole_bucket = run("s3", "pull", "s3://hostile", str(work / "b" / "dest"))

    assert below_prefix.exit_code == 1
    assert below_prefix.stdout == f"pulled {len(good)}, skipped 0 (already there), refused 5\n"
    for key in TRAVERSAL_KEYS:
        assert f"refused {key}: " in below_prefix.stderr
    assert tree(dest) == good
    assert whole_bucket.exit_code == 1
    assert "refused ../evil.json: " in whole_bucket.stderr and "refused /abs.json: " in whole_bucket.stderr
    assert tree(work / "b" / "dest") == {f"p/{k}": v for k, v in good.items()}
    assert outside(tmp_path, work / "a" / "dest") - {f"work/b/dest/p/{k}" for k in good} == before
    assert not any(p.name in ("evil.json", "abs.json", "dot.json") for p in tmp_path.rglob("*"))

    # Replay's cache refuses them too, and serves the rest.
    cached = materialize(make_client(options_for(moto, env)), S3Location("hostile", "p"), options_for(moto, env))
    assert tree(cached) == good
    assert not any(p.name in ("evil.json", "abs.json", "dot.json") for p in tmp_path.rglob("*"))


def test_push_sets_server_side_encryption(moto: str, env: Path, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("TIMETRACER_S3_ENDPOINT_URL", moto)
    s3 = s3client(moto)
    s3.create_bucket(Bucket="encrypted")
    write_tree(tmp_path / "local", mixed(1))

    result = run("s3", "push", "--sse", "AES256", str(tmp_path / "local"), "s3://encrypted/rec")

    assert result.exit_code == 0
    for obj in s3.list_objects_v2(Bucket="encrypted")["Contents"]:
        assert s3.head_object(Bucket="encrypted", Key=obj["Key"])["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize("key", ["../evil.json", "a/../../evil.json", "/abs.json", "", "a//b.json", "./x.json",
                                 "a/.", "..\\evil.json", "a\\..\\b.json", "C:/x.json", "C:\\x.json", "%2e%2e/x.json",
                                 "\x01x.json", " leading.json", ".hidden.json", "a/.x.json.part", "a/b\nc.json"])
def test_local_path_for_refuses(key: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeKeyError):
        local_path_for(tmp_path, key)


def test_local_path_for_refuses_a_symlink_out_and_accepts_cassette_names(tmp_path: Path) -> None:
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    (dest / "inside").mkdir(parents=True)
    elsewhere.mkdir()
    (dest / "out").symlink_to(elsewhere)
    (dest / "in").symlink_to(dest / "inside")
    with pytest.raises(UnsafeKeyError, match="resolves outside"):
        local_path_for(dest, "out/x.json")
    assert local_path_for(dest, "in/x.json") == dest / "in" / "x.json"
    name = "svc/_session/2026-11-29/120000000000__svc__0123456789ab.json.zst"
    assert local_path_for(dest, name) == dest.joinpath(*name.split("/"))


def test_object_arguments() -> None:
    assert object_arguments("2026-11-29/GET__x__1.json") == {"ContentType": "application/json"}
    assert object_arguments("p/svc/2026-11-29/GET__x__1.json.gz") == {"ContentType": "application/json",
                                                                      "ContentEncoding": "gzip"}
    assert object_arguments("GET__x__1.json.zst") == {"ContentType": "application/json", "ContentEncoding": "zstd"}


# --- timetracer list s3:// and replay's cache ----------------------------------------------------------------------

def test_list_shows_the_cassettes_at_an_s3_url(env: Path, s3: Any, s3_bucket: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    files = mixed()
    put_tree(s3, s3_bucket, "rec/shop", files)
    requests = sorted(f"shop/{k}" for k in files if not k.startswith("_session"))

    table = run("list", f"s3://{s3_bucket}/rec")
    as_json = run("list", "--json", f"s3://{s3_bucket}/rec")
    monkeypatch.setenv("TIMETRACER_DIR", f"s3://{s3_bucket}/rec/shop")
    default = run("list", "--json")

    assert table.exit_code == 0, table.output
    assert sorted(line.split()[-1] for line in table.stdout.splitlines()[1:]) == requests
    assert sorted(entry["file"] for entry in json.loads(as_json.stdout)) == requests
    assert len(json.loads(default.stdout)) == len(requests)
    assert tree(env / s3_bucket / "rec") == {f"shop/{k}": v for k, v in files.items()}


def test_list_of_an_empty_or_missing_location(env: Path, s3_bucket: str) -> None:
    empty = run("list", f"s3://{s3_bucket}/nothing")
    missing = run("list", "s3://no-such-bucket-here/p")
    assert (empty.exit_code, empty.stderr) == (2, f"error: no cassettes at s3://{s3_bucket}/nothing\n")
    assert missing.exit_code == 2
    assert missing.stderr == "error: the bucket 'no-such-bucket-here' does not exist (or is not visible with these " \
                             "credentials)\n"


def test_materialize_a_prefix_follows_the_bucket(env: Path, s3: Any, s3_bucket: str, s3_endpoint: str) -> None:
    files = mixed()
    put_tree(s3, s3_bucket, "rec/shop", files)
    options = options_for(s3_endpoint, env)
    client = make_client(options)
    location = S3Location(s3_bucket, "rec/shop")

    folder = materialize(client, location, options)
    assert folder == env / s3_bucket / "rec" / "shop"
    assert tree(folder) == files

    removed, *kept = sorted(k for k in files if not k.startswith("_session"))
    s3.delete_object(Bucket=s3_bucket, Key=f"rec/shop/{removed}")
    added = files_of([(request_cassette(99, day=5), Compression.GZIP)])
    put_tree(s3, s3_bucket, "rec/shop", added)
    (folder / "2026-11-29" / ".leftover.json.part").write_bytes(b"x")

    assert materialize(client, location, options) == folder
    expected = {k: v for k, v in files.items() if k != removed} | added
    assert tree(folder) == expected
    source = CassetteSource.open(folder)
    assert len(source.cassettes) == len(kept) + 1 and source.process_session is not None


def test_materialize_a_single_key_brings_its_session_cassettes(env: Path, s3: Any, s3_bucket: str,
                                                               s3_endpoint: str) -> None:
    files = mixed(4)
    put_tree(s3, s3_bucket, "rec/shop", files)
    options = options_for(s3_endpoint, env)
    key = next(k for k in files if k.endswith(".json.gz"))
    sessions = {k: v for k, v in files.items() if k.startswith("_session/")}

    path = materialize(make_client(options), S3Location(s3_bucket, f"rec/shop/{key}"), options)

    assert path == env / s3_bucket / "rec" / "shop" / key
    assert tree(env / s3_bucket / "rec" / "shop") == {key: files[key], **sessions}
    assert gzip.decompress(path.read_bytes()) == gzip.decompress(files[key])
    source = CassetteSource.open(path)
    assert len(source.cassettes) == 1 and source.process_session is not None


def test_materialize_errors_are_clear(env: Path, s3_bucket: str, s3_endpoint: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    options = options_for(s3_endpoint, env)
    with pytest.raises(CassetteNotFoundError, match=f"s3://{s3_bucket}/nothing: no cassette here"):
        materialize(make_client(options), S3Location(s3_bucket, "nothing"), options)
    with pytest.raises(CassetteNotFoundError):
        materialize(make_client(options), S3Location(s3_bucket, "nothing/GET__x__1.json"), options)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(S3SourceError, match="S3 refused the credentials"):
        materialize(make_client(options), S3Location(s3_bucket, "p"), options)


def test_materialize_falls_back_to_the_cached_copy_only_when_s3_is_unreachable(
        env: Path, s3: Any, s3_bucket: str, s3_endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    files = mixed(2)
    put_tree(s3, s3_bucket, "rec/shop", files)
    options = options_for(s3_endpoint, env)
    location = S3Location(s3_bucket, "rec/shop")
    folder = materialize(make_client(options), location, options)

    offline = S3Options(endpoint_url=f"http://127.0.0.1:{free_port()}", cache_dir=options.cache_dir)
    assert materialize(make_client(offline, max_attempts=1), location, offline) == folder
    assert tree(folder) == files
    assert "cannot reach S3" in caplog.text and f"replaying the copy cached at {folder}" in caplog.text
    with pytest.raises(S3SourceError, match="cannot reach S3"):  # nothing cached for this one
        materialize(make_client(offline, max_attempts=1), S3Location(s3_bucket, "other"), offline)


def test_pull_into_the_cache_writes_private_files(env: Path, s3: Any, s3_bucket: str, s3_endpoint: str) -> None:
    put_tree(s3, s3_bucket, "p", mixed(1))
    options = options_for(s3_endpoint, env)
    report = pull(make_client(options), S3Location(s3_bucket, "p"), env / "direct", workers=2)
    assert report.ok and len(report.copied) == 2 and report.bytes_copied > 0
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (env / "direct").rglob("*.json*"))
    assert len(list(iter_cassette_files(env / "direct"))) == 1


# --- errors --------------------------------------------------------------------------------------------------------

def assert_one_line_error(result: Result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.output


def test_wrong_credentials_are_one_clear_line(env: Path, s3: Any, s3_bucket: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_tree(tmp_path / "local", mixed(1))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    for args in (("ls", f"s3://{s3_bucket}/p"), ("pull", f"s3://{s3_bucket}/p", str(tmp_path / "d")),
                 ("push", str(tmp_path / "local"), f"s3://{s3_bucket}/p")):
        assert_one_line_error(run("s3", *args), "S3 refused the credentials")
    assert not (tmp_path / "d").exists()


def test_a_missing_bucket_is_one_clear_line(env: Path, tmp_path: Path) -> None:
    result = run("s3", "pull", "s3://no-such-bucket-here/p", str(tmp_path / "d"))
    assert_one_line_error(result, "the bucket 'no-such-bucket-here' does not exist")


@pytest.mark.parametrize(("args", "fragment"), [
    (("ls", "bucket/p"), "is not an s3:// URL"),
    (("ls", "s3://Bad_Bucket/p"), "is not a valid S3 bucket name"),
    (("pull", "s3://bucket/a/../b", "d"), "has an empty, '.' or '..' segment"),
    (("push", "no-such-dir", "s3://bucket/p"), "no cassettes at no-such-dir"),
    (("push", "--sse-kms-key-id", "k", "d", "s3://bucket/p"), "--sse-kms-key-id needs --sse aws:kms"),
])
def test_usage_errors_exit_2(env: Path, args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(run("s3", *args), fragment)


def test_an_unreachable_endpoint_is_one_clear_line(env: Path, tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    result = run("s3", "pull", "--endpoint-url", nobody, "s3://bucket/p", str(tmp_path / "d"))
    assert_one_line_error(result, f"cannot reach S3 for s3://bucket/p (Could not connect to the endpoint URL: "
                                  f'"{nobody}/bucket')


def test_pull_of_an_empty_prefix_is_an_error(env: Path, s3_bucket: str, tmp_path: Path) -> None:
    assert_one_line_error(run("s3", "pull", f"s3://{s3_bucket}/none", str(tmp_path / "d")),
                          f"no objects at s3://{s3_bucket}/none")
    empty = run("s3", "ls", f"s3://{s3_bucket}/none")
    assert (empty.exit_code, empty.stdout) == (0, f"no objects at s3://{s3_bucket}/none\n")


def test_the_console_script_reaches_s3(env: Path, s3: Any, s3_bucket: str, tmp_path: Path) -> None:
    """The installed ``timetracer`` with credentials only in its environment, as a user runs it."""
    import subprocess

    put_tree(s3, s3_bucket, "p", mixed(1))
    result = subprocess.run([str(BIN / "timetracer"), "s3", "pull", f"s3://{s3_bucket}/p", str(tmp_path / "d")],
                            capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "pulled 2, skipped 0 (already there), refused 0\n", "")
