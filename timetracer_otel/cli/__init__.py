"""The ``timetracer`` command line: inspect recorded cassettes.

One module per command family keeps each small; this module only assembles the group.
"""

from __future__ import annotations

import click

from timetracer_otel._version import __version__
from timetracer_otel.cli._list import list_command
from timetracer_otel.cli._replay import replay_command
from timetracer_otel.cli._s3 import s3_group
from timetracer_otel.cli._show import show_command

__all__ = ["main"]


@click.group(name="timetracer")
@click.version_option(__version__, prog_name="timetracer", message="%(prog)s %(version)s")
def main() -> None:
    """Inspect the cassettes timetracer-otel records."""


main.add_command(list_command)
main.add_command(show_command)
main.add_command(replay_command)
main.add_command(s3_group)
