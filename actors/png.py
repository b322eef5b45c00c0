"""PNG encoding of a rendered page, tuned for previews.

MuPDF's own PNG writer (`Pixmap.tobytes("png")`) compresses at zlib's default level, which
costs most of the render phase's CPU. Previews are read by browsers once and stored once, so
a cheaper level pays: level 2 with no row filter encodes a text page in much less time for
somewhat more bytes (see docs/BENCHMARKS.md, 'Design choices').
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZLIB_LEVEL = 2
# PNG colour types by samples per pixel: grey, grey + alpha, RGB, RGBA.
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


def encode_png(pixmap: Any) -> bytes:
    """`pixmap` (a PyMuPDF Pixmap, 8 bits per sample) as PNG bytes."""
    colour_type = COLOUR_TYPES.get(pixmap.n)
    if colour_type is None:
        raise ValueError(f"no PNG colour type for {pixmap.n} samples per pixel")
    header = struct.pack(">IIBBBBB", pixmap.width, pixmap.height, 8, colour_type, 0, 0, 0)
    return b"".join(
        [
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(_unfiltered_rows(pixmap), ZLIB_LEVEL)),
            _chunk(b"IEND", b""),
        ]
    )


def _unfiltered_rows(pixmap: Any) -> bytes:
    """The samples with filter type 0 ("none") in front of each row, as PNG wants them."""
    row_bytes = pixmap.width * pixmap.n
    samples = np.frombuffer(pixmap.samples_mv, dtype=np.uint8)
    rows = samples.reshape(pixmap.height, pixmap.stride)[:, :row_bytes]
    filtered = np.zeros((pixmap.height, row_bytes + 1), dtype=np.uint8)
    filtered[:, 1:] = rows
    return filtered.tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    checksum = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)
