"""The same service with Litestar's own OpenTelemetry plugin configured: timetracer records it through that
plugin's middleware and adds none of its own."""

from __future__ import annotations

from app import get_user, quote
from litestar import Litestar
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

app = Litestar(route_handlers=[get_user, quote], plugins=[OpenTelemetryPlugin(OpenTelemetryConfig())])
