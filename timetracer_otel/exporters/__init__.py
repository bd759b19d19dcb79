"""Where finished cassettes go. Every exporter implements :class:`~timetracer_otel.exporters.base.Exporter`;
:class:`~timetracer_otel.exporters.spec.ExporterSpec` says which one the settings name."""

from timetracer_otel.exporters.base import Exporter
from timetracer_otel.exporters.file import FileExporter
from timetracer_otel.exporters.spec import ExporterSpec

__all__ = ["Exporter", "ExporterSpec", "FileExporter"]
