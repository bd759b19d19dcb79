"""The pipe protocol between the app's process and its writer process (see ``_writer_process``)."""

import struct

#: After the frame type ``W``: the path's length and the data's length.
HEADER = struct.Struct(">IQ")
