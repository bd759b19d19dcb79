"""Wires settings, the recorder or replay source, the network guard and the integrations together.

One :class:`Runtime` per process, created by :func:`install` (the ``opentelemetry-instrument`` bootstrap calls
it too). Installing again returns the runtime already installed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from timetracer_otel.errors import ConfigurationError
from timetracer_otel.exporters.spec import ExporterSpec
from timetracer_otel.integrations._base import Integration
from timetracer_otel.integrations.registry import INBOUND, OUTBOUND
from timetracer_otel.record.metrics import observe_recorder
from timetracer_otel.record.recorder import Recorder, RecorderStats
from timetracer_otel.record.signals import flush_on_sigterm
from timetracer_otel.record.writer_process import WriterProcess
from timetracer_otel.replay.guard import NetworkGuard
from timetracer_otel.replay.session import ReplaySession
from timetracer_otel.replay.source import CassetteSource
from timetracer_otel.settings import Compression, Mode, Settings

__all__ = ["Runtime", "install", "uninstall"]

logger = logging.getLogger("timetracer")

class _Installed:
    """The process-wide runtime: patches and the tracer provider are process-wide too.

    Integrations outlive runtimes, so a later install reuses wrappers left under an OTel instrumentor's.
    """

    lock = threading.Lock()
    runtime: Runtime | None = None
    integrations: dict[str, Integration] = {}
    flushes_on_sigterm = False


def _shut_down_recorder() -> None:
    runtime = _Installed.runtime
    if runtime is not None and runtime.recorder is not None:
        runtime.recorder.shutdown()


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.recorder: Recorder | None = None
        self.source: CassetteSource | None = None
        self.guard: NetworkGuard | None = None
        self.integrations: list[Integration] = []

    @property
    def replaying(self) -> bool:
        """Answering calls from cassettes: the whole process (TIMETRACER_MODE=replay), or a test's cassette
        (the pytest plugin makes it the process's replay session while the test runs)."""
        return self.source is not None or ReplaySession.process is not None

    def start(self, provider: TracerProvider | None) -> None:
        """``provider`` is None when there are no SDK spans: cassettes then carry no span tree."""
        settings = self.settings
        if settings.mode is Mode.RECORD:
            _check_compression(settings)
            _check_s3(settings)
            writer = WriterProcess(ExporterSpec.from_settings(settings))
            if settings.s3_destination is not None:
                writer.start()
            self.recorder = Recorder(settings, writer)
            observe_recorder(self.recorder.stats)
            if provider is not None:
                provider.add_span_processor(self.recorder.tracker)
            if not _Installed.flushes_on_sigterm:
                _Installed.flushes_on_sigterm = flush_on_sigterm(_shut_down_recorder)
        elif settings.mode is Mode.REPLAY:
            self.source = CassetteSource.open(_local_replay_source(settings), settings.on_exhausted)
            ReplaySession.process = self.source.process_session
            if settings.network_guard:
                self.guard = NetworkGuard()
                self.guard.install()
        self.install_integrations()
        logger.info("timetracer: %s mode, integrations: %s", settings.mode.value,
                    ", ".join(i.name for i in self.integrations) or "none")

    def install_integrations(self) -> None:
        for name, entry in {**INBOUND, **OUTBOUND}.items():
            try:
                if importlib.util.find_spec(entry.library) is None:
                    continue
                integration = _Installed.integrations.get(name)
                if integration is None:
                    integration = importlib.import_module(entry.module).INTEGRATION(self)
                    _Installed.integrations[name] = integration
                integration.runtime = self
                integration.install()
            except Exception:
                # One broken integration must not take the others down; the network guard still
                # stops its calls from silently going live in replay.
                logger.exception("timetracer: the %s integration could not be installed; its calls are "
                                 "neither recorded nor replayed", name)
                continue
            self.integrations.append(integration)

    @contextlib.contextmanager
    def answering(self, source: CassetteSource | None) -> Iterator[None]:
        """Inside the block, inbound requests are replayed from ``source`` and calls outside them from its
        session cassettes; the previous source is back afterwards. ``timetracer replay`` gives each recorded
        request a source holding only its own cassette this way."""
        saved = self.source, ReplaySession.process
        self.source = source
        ReplaySession.process = source.process_session if source is not None else None
        try:
            yield
        finally:
            self.source, ReplaySession.process = saved

    def stop(self) -> None:
        for integration in reversed(self.integrations):
            integration.uninstall()
        self.integrations.clear()
        if self.source is not None and ReplaySession.process is self.source.process_session:
            ReplaySession.process = None
        if self.guard is not None:
            self.guard.uninstall()
        if self.recorder is not None:
            self.recorder.shutdown()


def _check_compression(settings: Settings) -> None:
    if settings.compression is Compression.ZSTD and importlib.util.find_spec("zstandard") is None:
        raise ConfigurationError(
            "TIMETRACER_COMPRESSION", "zstd", "gzip or none, or install zstandard: pip install 'timetracer-otel[zstd]'"
        )


def _check_s3(settings: Settings) -> None:
    if settings.s3_destination is not None and importlib.util.find_spec("boto3") is None:
        raise ConfigurationError("TIMETRACER_DIR", str(settings.s3_destination),
                                 "a local folder, or install boto3 for S3: pip install 'timetracer-otel[s3]'")


def _local_replay_source(settings: Settings) -> Path:
    """The replay source on disk: an ``s3://`` source is pulled into the local cache first (before the
    network guard is installed), and only what changed is fetched again."""
    source = settings.replay_source
    if isinstance(source, Path):
        return source
    from timetracer_otel.s3.cache import materialize
    from timetracer_otel.s3.client import make_client

    with suppress_instrumentation():
        local = materialize(make_client(settings.s3), source, settings.s3)
    logger.info("timetracer: replaying %s from its local copy %s", source, local)
    return local


def _sdk_provider() -> TracerProvider | None:
    """The SDK tracer provider our span tracker joins, creating one if nobody configured tracing."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        logger.warning("timetracer: OTEL_SDK_DISABLED=true, so there are no spans: cassettes are recorded and "
                       "replayed without their span tree")
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    if not isinstance(provider, trace.ProxyTracerProvider):
        logger.warning("timetracer: the tracer provider is not the OpenTelemetry SDK's, so cassettes are "
                       "recorded without their span tree")
        return None
    provider = TracerProvider(sampler=ALWAYS_ON)
    trace.set_tracer_provider(provider)
    return provider


def _instrument_libraries() -> None:
    """What ``opentelemetry-instrument`` does: run every installed instrumentor whose library is present."""
    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

    for entry_point in entry_points(group="opentelemetry_instrumentor"):
        try:
            instrumentor = entry_point.load()()
            if get_dependency_conflicts(instrumentor.instrumentation_dependencies()):
                continue  # its library is not installed
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument()
        except Exception:
            logger.debug("timetracer: instrumentor %s not loaded", entry_point.name, exc_info=True)


def install(settings: Settings | None = None, *, instrument_libraries: bool = True) -> Runtime:
    """Start recording or replaying in this process, as ``opentelemetry-instrument`` with our distro would.

    Settings default to the environment (``Settings.from_env()``). Patches go in before the OpenTelemetry
    instrumentors (run here when ``instrument_libraries`` is true), so client spans still appear in replay.
    """
    with _Installed.lock:
        if _Installed.runtime is not None:
            return _Installed.runtime
        settings = settings if settings is not None else Settings.from_env()
        runtime = Runtime(settings)
        if settings.mode is not Mode.OFF:
            runtime.start(_sdk_provider())
            if instrument_libraries:
                _instrument_libraries()
        _Installed.runtime = runtime
        return runtime


def install_integrations_only() -> Runtime:
    """The runtime cassette blocks (``timetracer_otel.testing``, the pytest plugin) work with: the integrations
    installed, neither a recorder nor a replay source; each block makes its cassette the process's session.
    No OpenTelemetry instrumentor is run: the integrations do not need them."""
    with _Installed.lock:
        runtime = _Installed.runtime
        if runtime is None:
            runtime = Runtime(Settings.from_env({k: v for k, v in os.environ.items() if k != "TIMETRACER_MODE"}))
            runtime.install_integrations()
            _Installed.runtime = runtime
        elif runtime.recorder is not None or runtime.source is not None:
            raise ConfigurationError("TIMETRACER_MODE", runtime.settings.mode.value,
                                     "off (unset) while tests use cassettes: the process cannot record or replay "
                                     "as a whole and per test at once")
        elif not runtime.integrations:
            runtime.install_integrations()
        return runtime


def uninstall() -> None:
    """Undo :func:`install` (tests use this; a served app just exits)."""
    with _Installed.lock:
        if _Installed.runtime is not None:
            _Installed.runtime.stop()
            _Installed.runtime = None


def installed() -> Runtime | None:
    return _Installed.runtime


def recorder_stats() -> RecorderStats | None:
    """Counters of the running recorder (None unless recording)."""
    runtime = _Installed.runtime
    return runtime.recorder.stats if runtime is not None and runtime.recorder is not None else None
