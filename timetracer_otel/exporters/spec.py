"""Which exporter stores cassettes, described in data: the writer process opens the same exporter the app's
settings name, from this description passed on its command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from timetracer_otel.exporters.base import Exporter
from timetracer_otel.s3.client import S3Options
from timetracer_otel.s3.location import S3Location
from timetracer_otel.settings import Compression, Settings

__all__ = ["ExporterSpec"]


# The only type in a spec that JSON has no form for is Path: written as its string, read back from it.
def _decode_path(kind: type[Path], value: str) -> Path:
    return kind(value)


@dataclass(frozen=True)
class ExporterSpec:
    """Files below ``directory``, or objects below ``s3`` when it is set."""

    service: str
    compression: Compression = Compression.NONE
    directory: Path = Path("cassettes")
    s3: S3Location | None = None
    s3_options: S3Options = field(default_factory=S3Options)
    #: How long closing an exporter that queues (S3) may take to store what is queued.
    flush_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ExporterSpec:
        return cls(service=settings.service, compression=settings.compression, directory=settings.directory,
                   s3=settings.s3_destination, s3_options=settings.s3, flush_timeout=settings.flush_timeout)

    def open(self) -> Exporter:
        if self.s3 is None:
            from timetracer_otel.exporters.file import FileExporter

            return FileExporter(self.directory, self.compression)
        from timetracer_otel.exporters.s3 import S3Exporter

        return S3Exporter(self.s3, self.s3_options, self.service, self.compression,
                          flush_timeout=self.flush_timeout)

    def to_json(self) -> str:
        return msgspec.json.encode(self, enc_hook=str).decode()

    @classmethod
    def from_json(cls, text: str) -> ExporterSpec:
        return msgspec.json.decode(text, type=cls, dec_hook=_decode_path)
