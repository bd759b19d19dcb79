"""Cassettes in S3: locations, the client, and the transfers the CLI, replay and the exporter share."""

from timetracer_otel.s3.client import S3Options, describe_s3_error, make_client
from timetracer_otel.s3.location import S3Location, UnsafeKeyError, is_s3_url, local_path_for

__all__ = ["S3Location", "S3Options", "UnsafeKeyError", "describe_s3_error", "is_s3_url", "local_path_for",
           "make_client"]
