"""Where finished cassettes go. Every exporter implements :class:`~timetracer_otel.exporters.base.Exporter`."""

from timetracer_otel.exporters.base import Exporter
from timetracer_otel.exporters.file import FileExporter

__all__ = ["Exporter", "FileExporter"]
