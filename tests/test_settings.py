from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.servers import BIN, EXAMPLE
from timetracer_otel import environment_variables
from timetracer_otel.errors import ConfigurationError
from timetracer_otel.s3.location import S3Location
from timetracer_otel.settings import VARIABLES, Compression, Mode, OnExhausted, Settings, Storage


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.mode is Mode.OFF
    assert settings.directory == Path("cassettes")
    assert settings.replay_source == Path("cassettes")
    assert settings.mocked_plugins == {
        "httpx", "requests", "aiohttp", "asyncpg", "psycopg", "sqlite", "sqlalchemy", "tortoise", "redis", "mongo",
    }
    assert settings.max_body_bytes == 1024 * 1024
    assert "/health" in settings.exclude_paths
    assert settings.record_clock is True


def test_every_variable_read() -> None:
    settings = Settings.from_env(
        {
            "TIMETRACER_MODE": "Replay",
            "TIMETRACER_DIR": "/tmp/c",
            "TIMETRACER_CASSETTE": "/tmp/one.json",
            "TIMETRACER_SAMPLE_RATE": "0.25",
            "TIMETRACER_ERRORS_ONLY": "yes",
            "TIMETRACER_EXCLUDE_PATHS": "/internal/*, /ping",
            "TIMETRACER_COMPRESSION": "gzip",
            "TIMETRACER_MAX_BODY_BYTES": "10",
            "TIMETRACER_LIVE_PLUGINS": "aiohttp",
            "TIMETRACER_SERVICE": "shop",
            "TIMETRACER_NETWORK_GUARD": "off",
            "TIMETRACER_ON_EXHAUSTED": "repeat_last",
            "TIMETRACER_RECORD_CLOCK": "off",
        }
    )
    assert settings.mode is Mode.REPLAY
    assert settings.replay_source == Path("/tmp/one.json")
    assert settings.sample_rate == 0.25
    assert settings.errors_only is True
    assert settings.exclude_paths == ("/internal/*", "/ping")
    assert settings.compression is Compression.GZIP
    assert settings.max_body_bytes == 10
    assert "aiohttp" not in settings.mocked_plugins and {"httpx", "requests", "redis"} <= settings.mocked_plugins
    assert settings.live_plugins == {"aiohttp"}
    assert settings.service == "shop"
    assert settings.network_guard is False
    assert settings.on_exhausted is OnExhausted.REPEAT_LAST
    assert settings.record_clock is False


def test_otel_prefixed_form_and_precedence() -> None:
    assert Settings.from_env({"OTEL_TIMETRACER_MODE": "record"}).mode is Mode.RECORD
    both = {"OTEL_TIMETRACER_MODE": "record", "TIMETRACER_MODE": "replay"}
    assert Settings.from_env(both).mode is Mode.REPLAY
    assert Settings.from_env({"OTEL_SERVICE_NAME": "svc"}).service == "svc"


def test_s3_destination_from_a_url_or_from_bucket_and_prefix() -> None:
    from_url = Settings.from_env({"TIMETRACER_DIR": "s3://cassettes/prod/", "TIMETRACER_SERVICE": "Shop API"})
    assert from_url.storage is Storage.S3
    assert from_url.s3_destination == S3Location("cassettes", "prod")
    # Replay reads the service's own folder of the prefix by default.
    assert from_url.replay_source == S3Location("cassettes", "prod/shop-api")
    from_parts = Settings.from_env({"TIMETRACER_STORAGE": "s3", "TIMETRACER_S3_BUCKET": "cassettes",
                                    "TIMETRACER_S3_PREFIX": "/prod", "TIMETRACER_S3_SSE": "aws:kms",
                                    "TIMETRACER_S3_SSE_KMS_KEY_ID": "alias/cassettes"})
    assert from_parts.s3_destination == S3Location("cassettes", "prod")
    assert from_parts.s3.encryption_arguments() == {"ServerSideEncryption": "aws:kms",
                                                    "SSEKMSKeyId": "alias/cassettes"}
    assert Settings.from_env({}).storage is Storage.FILE
    assert Settings.from_env({"TIMETRACER_CASSETTE": "s3://cassettes/prod/x.json"}).replay_source == \
        S3Location("cassettes", "prod/x.json")


def test_s3_settings_that_need_another_name_it() -> None:
    with pytest.raises(ConfigurationError, match=r"TIMETRACER_S3_SSE=.*aws:kms"):
        Settings.from_env({"TIMETRACER_S3_SSE_KMS_KEY_ID": "alias/cassettes"})
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"TIMETRACER_STORAGE": "s3"})
    assert str(caught.value).startswith("TIMETRACER_S3_BUCKET='' is not valid: expected a bucket name "
                                        "(TIMETRACER_STORAGE=s3 needs one)")


def test_group_names_expand() -> None:
    assert Settings.from_env({"TIMETRACER_LIVE_PLUGINS": "http"}).mocked_plugins.isdisjoint({"httpx", "requests"})
    assert Settings.from_env({"TIMETRACER_MOCK_PLUGINS": "httpx"}).mocked_plugins == {"httpx"}
    sql = {"asyncpg", "psycopg", "sqlite", "sqlalchemy", "tortoise"}
    assert Settings.from_env({"TIMETRACER_MOCK_PLUGINS": "sql"}).mocked_plugins == sql
    # Hybrid replay: Redis live, SQL and HTTP replayed.
    hybrid = Settings.from_env({"TIMETRACER_LIVE_PLUGINS": "redis"})
    assert hybrid.live_plugins == {"redis"} and {"httpx", "mongo", *sql} <= hybrid.mocked_plugins


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TIMETRACER_MODE", "recrod", "one of off|record|replay"),
        ("TIMETRACER_SAMPLE_RATE", "1.5", "between 0.0 and 1.0"),
        ("TIMETRACER_SAMPLE_RATE", "half", "a number"),
        ("TIMETRACER_MAX_BODY_BYTES", "-1", "an integer >= 0"),
        ("TIMETRACER_ERRORS_ONLY", "maybe", "true or false"),
        ("TIMETRACER_RECORD_CLOCK", "sometimes", "true or false (also 1/0, yes/no, on/off)"),
        ("TIMETRACER_COMPRESSION", "lz4", "none|gzip|zstd"),
        ("TIMETRACER_MOCK_PLUGINS", "httpx,db", "unknown: 'db'"),
        ("OTEL_TIMETRACER_LIVE_PLUGINS", "postgres", "plugin names from aiohttp, asyncpg, http, httpx, mongo,"),
        ("TIMETRACER_DIR", "s3://Bad_Bucket/x", "not a valid S3 bucket name"),
        ("TIMETRACER_CASSETTE", "s3://cassettes/a/../b", "'..' segment"),
        ("TIMETRACER_STORAGE", "ftp", "one of file|s3"),
        ("TIMETRACER_S3_SSE", "aes", "one of AES256|aws:kms|aws:kms:dsse"),
        ("TIMETRACER_S3_ENDPOINT_URL", "127.0.0.1:9000", "an http:// or https:// URL"),
        ("TIMETRACER_S3_SPILL_MAX_BYTES", "1GB", "an integer >= 0"),
    ],
)
def test_invalid_values_name_the_variable_and_the_allowed_values(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert f"{variable}={value!r}" in str(caught.value)
    assert expected in str(caught.value)


def test_a_plugin_cannot_be_both_mocked_and_live() -> None:
    with pytest.raises(ConfigurationError, match="both name httpx"):
        Settings.from_env({"TIMETRACER_MOCK_PLUGINS": "httpx", "TIMETRACER_LIVE_PLUGINS": "http"})


def test_every_variable_is_a_cli_flag() -> None:
    flags = {name for name in vars(environment_variables) if name.startswith("OTEL_TIMETRACER_")}
    assert flags == {f"OTEL_TIMETRACER_{name}" for name in VARIABLES}


def _instrumented(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = "print('the app ran')"
    return subprocess.run(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", code],
        env={"PATH": str(BIN), **env}, cwd=EXAMPLE, capture_output=True, text=True, timeout=60,
    )


def test_bad_value_stops_start_up_under_opentelemetry_instrument(tmp_path: Path) -> None:
    result = _instrumented({"TIMETRACER_MODE": "record", "TIMETRACER_SAMPLE_RATE": "2"}, tmp_path)
    assert result.returncode == 2
    assert "the app ran" not in result.stdout
    assert "TIMETRACER_SAMPLE_RATE='2' is not valid: expected a number between 0.0 and 1.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_flag_form_is_validated_too(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), "--timetracer_mode", "sometimes", str(BIN / "python"), "-c", "1"],
        env={"PATH": str(BIN)}, cwd=EXAMPLE, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "OTEL_TIMETRACER_MODE='sometimes'" in result.stderr


def test_missing_replay_cassette_stops_start_up(tmp_path: Path) -> None:
    result = _instrumented({"TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(tmp_path / "nope")}, tmp_path)
    assert result.returncode == 2
    assert "no cassette here" in result.stderr


def test_corrupt_replay_cassette_stops_start_up_with_the_problem(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": 1, "metadata": {')
    result = _instrumented({"TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(broken)}, tmp_path)
    assert result.returncode == 2
    assert f"{broken}: not valid JSON" in result.stderr
    assert "truncated" in result.stderr
    assert "Traceback" not in result.stderr


def test_off_mode_runs_the_app_untouched(tmp_path: Path) -> None:
    result = _instrumented({}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "the app ran"


SAMPLER = "from opentelemetry import trace; print(trace.get_tracer_provider().sampler.get_description())"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TIMETRACER_MODE": "record"}, "AlwaysOnSampler"),
        ({"TIMETRACER_MODE": "record", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
         "TraceIdRatioBased{0.5}"),
    ],
)
def test_record_mode_samples_everything_unless_the_user_chose(tmp_path: Path, env: dict[str, str],
                                                              expected: str) -> None:
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), "-c", SAMPLER],
        env={"PATH": str(BIN), "TIMETRACER_DIR": str(tmp_path), **env}, cwd=EXAMPLE, capture_output=True,
        text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_misspelt_variables_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    Settings.from_env({"TIMETRACER_SAMPLERATE": "0.5", "OTEL_TIMETRACER_MODE": "off", "TIMETRACER_XYZZY": "1"})
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "timetracer: TIMETRACER_SAMPLERATE is not a timetracer setting and is ignored; "
        "did you mean TIMETRACER_SAMPLE_RATE?",
        "timetracer: TIMETRACER_XYZZY is not a timetracer setting and is ignored",
    ]


def test_zstd_without_zstandard_stops_start_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from timetracer_otel.runtime import install, uninstall

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "zstandard" else real_find_spec(name, *a))
    with pytest.raises(ConfigurationError, match=r"install zstandard: pip install 'timetracer-otel\[zstd\]'"):
        install(Settings(mode=Mode.RECORD, directory=tmp_path, compression=Compression.ZSTD))
    uninstall()
