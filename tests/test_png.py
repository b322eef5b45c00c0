"""Previews encoded by `actors.png` decode to the very pixels MuPDF rendered."""

from __future__ import annotations

import struct
import zlib

import pymupdf
import pytest

from actors.png import encode_png
from cluster.sample_corpus import TOPICS, write_sample_pdf


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk, checking every CRC: a strict reader's view."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + data), kind
        chunks.append((kind, data))
        offset += 12 + length
    return chunks


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> pymupdf.Page:
    path = tmp_path_factory.mktemp("png") / "page.pdf"
    write_sample_pdf(path, next(iter(TOPICS)), 1, seed=0)
    return pymupdf.open(path)[0]


@pytest.mark.parametrize(
    ("colorspace", "alpha"),
    [(pymupdf.csRGB, False), (pymupdf.csGRAY, False), (pymupdf.csRGB, True)],
)
def test_a_rendered_page_round_trips_exactly(
    page: pymupdf.Page, colorspace: pymupdf.Colorspace, alpha: bool
) -> None:
    pixmap = page.get_pixmap(dpi=50, colorspace=colorspace, alpha=alpha)

    png = encode_png(pixmap)

    decoded = pymupdf.Pixmap(png)
    assert (decoded.width, decoded.height, decoded.n) == (pixmap.width, pixmap.height, pixmap.n)
    assert decoded.samples == pixmap.samples
    kinds = [kind for kind, _ in png_chunks(png)]
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_the_image_data_is_one_unfiltered_row_per_line(page: pymupdf.Page) -> None:
    pixmap = page.get_pixmap(dpi=30)

    chunks = dict(png_chunks(encode_png(pixmap)))

    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour_type) == (pixmap.width, pixmap.height, 8, 2)
    rows = zlib.decompress(chunks[b"IDAT"])
    row_bytes = pixmap.width * 3 + 1
    assert len(rows) == pixmap.height * row_bytes
    assert rows[::row_bytes] == bytes(pixmap.height)  # filter type 0 on every row


def test_a_pixmap_png_cannot_hold_is_refused(page: pymupdf.Page) -> None:
    cmyk = page.get_pixmap(dpi=20, colorspace=pymupdf.csCMYK, alpha=True)  # 5 samples

    with pytest.raises(ValueError, match="5 samples"):
        encode_png(cmyk)


def test_a_sample_page_preview_is_smaller_than_its_raw_pixels(page: pymupdf.Page) -> None:
    pixmap = page.get_pixmap(dpi=72)

    assert len(encode_png(pixmap)) < len(pixmap.samples) / 5
