"""Hand-made PDFs for the pipeline tests: good ones from the sample generator, bad ones
(corrupt, encrypted, zero bytes, truncated) built the way they occur in the wild, and the
hostile corpus (random bytes, 5,000 pages, a 20,000 pt page, a scan, nested objects, a
broken xref, a glyph bomb...), written with PyMuPDF or byte by byte at test time."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cluster.sample_corpus import write_sample_pdf


def good_pdfs(folder: Path, pages: list[int]) -> list[Path]:
    titles = ["Ray cluster operations", "Document indexing", "Realtime progress", "Storage engines"]
    paths = []
    for index, count in enumerate(pages):
        path = folder / f"good-{index}.pdf"
        write_sample_pdf(path, titles[index % len(titles)], count, seed=index)
        paths.append(path)
    return paths


def bad_pdfs(folder: Path, template: Path) -> dict[str, Path]:
    """Each bad kind, named for the error the fetch phase must report."""
    import pymupdf

    data = template.read_bytes()
    bad = {
        "empty": folder / "zero.pdf",
        "corrupt": folder / "random.pdf",
        "encrypted": folder / "locked.pdf",
        "truncated": folder / "truncated.pdf",
    }
    bad["empty"].write_bytes(b"")
    bad["corrupt"].write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 64 + b"\n%%EOF\n")
    document = pymupdf.open(template)
    document.save(
        bad["encrypted"],
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        user_pw="user-secret",
        owner_pw="owner-secret",
    )
    document.close()
    bad["truncated"].write_bytes(data[: len(data) // 3])
    return bad


def debian_manual(folder: Path, pages: int) -> Path:
    """An excerpt of a real-world PDF: the gnuplot manual from Debian's `gnuplot-doc`,
    fetched with `apt-get download` (never committed), its first `pages` pages."""
    import subprocess

    import pymupdf

    def download() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["apt-get", "download", "gnuplot-doc"], cwd=folder, capture_output=True, timeout=300
        )

    if download().returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
        download().check_returncode()
    package = next(folder.glob("gnuplot-doc_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(package), str(folder / "root")], check=True)
    manual = pymupdf.open(folder / "root/usr/share/doc/gnuplot/gnuplot.pdf")
    manual.select(list(range(min(pages, manual.page_count))))
    excerpt = folder / "gnuplot-manual-excerpt.pdf"
    manual.save(excerpt)
    manual.close()
    return excerpt


@dataclass(frozen=True)
class Hostile:
    """A hostile document and the outcome it must have: `status` of its document, and what
    its `error` (failed) or `warning` (partial) starts with."""

    path: Path
    status: str
    message: str | None = None


def hostile_pdfs(folder: Path, template: Path) -> dict[str, Hostile]:
    """The hostile corpus of issue #6, generated here (never committed)."""
    bad = bad_pdfs(folder, template)
    hostile = {
        "zero bytes": Hostile(bad["empty"], "failed", "empty: the file has zero bytes"),
        "garbage after a header": Hostile(bad["corrupt"], "failed", "corrupt: not a readable"),
        "truncated": Hostile(bad["truncated"], "failed", "truncated: "),
        "user password": Hostile(bad["encrypted"], "failed", "encrypted: a password"),
    }
    writers: dict[str, tuple[Callable[[Path], None], str, str | None]] = {
        "random bytes": (_random_bytes, "failed", "not a PDF: no %PDF- header"),
        "png named .pdf": (_png_named_pdf, "failed", "not a PDF: no %PDF- header"),
        "owner password only": (_owner_password_only, "indexed", None),
        "5,000 pages": (_five_thousand_pages, "failed", "too many pages: 5000; the limit is"),
        "20,000 x 20,000 pt page": (_huge_page, "indexed", None),
        "image-only scan": (lambda p: _image_only_scan(p, template), "indexed", None),
        "nested arrays": (_nested_arrays, "failed", "damaged: no page can be read"),
        "nested forms": (_nested_forms, "failed", "page 2 cannot be rendered"),
        "broken xref": (_broken_xref, "partial", "damaged: repaired on open"),
        "2 million glyphs": (
            lambda p: p.write_bytes(glyph_bomb(2_000_000)),
            "failed",
            "characters of text; the limit is 1,000,000 a page",
        ),
    }
    for name, (write, status, message) in writers.items():
        path = folder / f"hostile-{name.replace(' ', '-').replace(',', '')}.pdf"
        write(path)
        hostile[name] = Hostile(path, status, message)
    return hostile


def raw_pdf(objects: list[bytes], *, xref_shift: int = 0) -> bytes:
    """A PDF written byte by byte: object i + 1 is `objects[i]`, object 1 is the catalog.
    `xref_shift` moves every xref offset, as a broken writer does."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % (offset + xref_shift) for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _stream(body: bytes, extra: bytes = b"", *, deflate: bool = False) -> bytes:
    if deflate:
        body, extra = zlib.compress(body), extra + b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(body), extra, body)


HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
GLYPH_LINES_PER_PAGE = 1560
TEXT = b"BT /F1 24 Tf 72 720 Td (A page behind hostile structure) Tj ET"


def _text_pdf(pages: int = 1, page_extra: bytes = b"", *, xref_shift: int = 0) -> bytes:
    """`pages` pages sharing one text content stream; objects 1-4 are fixed."""
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> %s >>" % page_extra
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        _stream(TEXT),
        HELVETICA,
        *[page] * pages,
    ]
    return raw_pdf(objects, xref_shift=xref_shift)


def glyph_bomb(glyphs: int) -> bytes:
    """One page that draws `glyphs` tiny glyphs, all inside the page (over and over past 3
    million), from a few KB of deflated content: slow to render, large to extract."""
    words = b"lorem ipsum dolor sit amet " * 74  # 1,998 glyphs: 500 pt at half a point
    line = b"(" + words + b") Tj 0 -0.5 Td\n"
    lines = -(-glyphs // len(words))
    page_full = line * GLYPH_LINES_PER_PAGE + b"0 780 Td\n"  # then from the top again
    body = b"BT /F1 0.5 Tf 10 785 Td\n" + page_full * (lines // GLYPH_LINES_PER_PAGE)
    body += line * (lines % GLYPH_LINES_PER_PAGE) + b"ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
        _stream(body, deflate=True),
        HELVETICA,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> >>",
    ]
    return raw_pdf(objects)


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(6).randbytes(64 * 1024))


def _png_named_pdf(path: Path) -> None:
    import pymupdf

    pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 64, 64), False)
    pixmap.clear_with(128)
    path.write_bytes(pixmap.tobytes("png"))


def _owner_password_only(path: Path) -> None:
    """Opens without a password (the empty user password); the owner password only
    restricts what viewers allow. Its text is readable, so it is indexed."""
    import pymupdf

    document = pymupdf.open()
    document.new_page().insert_text((72, 72), "Owner password only: readable by anyone.")
    document.save(
        path,
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        owner_pw="owner-secret",
        user_pw="",
        permissions=pymupdf.PDF_PERM_PRINT,
    )
    document.close()


def _five_thousand_pages(path: Path) -> None:
    path.write_bytes(_text_pdf(pages=5000))


def _huge_page(path: Path) -> None:
    """One 20,000 x 20,000 pt page (PDF's own limit is 14,400): a 1.2 GB pixmap at 72 dpi
    unless the preview is capped."""
    import pymupdf

    document = pymupdf.open()
    page = document.new_page(width=20_000, height=20_000)
    page.insert_text((500, 1000), "A page of twenty thousand points", fontsize=400)
    document.save(path)
    document.close()


def _image_only_scan(path: Path, template: Path) -> None:
    """What a scanner makes: each page one grey JPEG, no text layer (no OCR here)."""
    import pymupdf

    source = pymupdf.open(template)
    scan = pymupdf.open()
    for page in list(source)[:2]:
        pixmap = page.get_pixmap(dpi=100, colorspace=pymupdf.csGRAY)
        target = scan.new_page(width=page.rect.width, height=page.rect.height)
        target.insert_image(target.rect, stream=pixmap.tobytes("jpeg"))
    scan.save(path)
    scan.close()
    source.close()


def _nested_arrays(path: Path) -> None:
    """The page object holds an array nested 100,000 deep: MuPDF cannot load the page."""
    depth = 100_000
    path.write_bytes(_text_pdf(page_extra=b"/Deep " + b"[" * depth + b"]" * depth))


def _nested_forms(path: Path) -> None:
    """Page 2 draws a form that draws a form ... 1,000 deep; page 1 is plain."""
    depth = 1000
    forms = []
    for level in range(depth):
        inner = b"/XObject << /X %d 0 R >>" % (9 + level) if level < depth - 1 else b""
        body = (b"/X Do " if inner else b"") + TEXT
        extra = b" /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources "
        forms.append(_stream(body, extra + b"<< /Font << /F1 4 0 R >> %s >>" % inner))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [5 0 R 6 0 R] /Count 2 >>",
        _stream(TEXT),
        HELVETICA,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 7 0 R "
        b"/Resources << /XObject << /X 8 0 R >> >> >>",
        _stream(b"/X Do"),
        *forms,
    ]
    path.write_bytes(raw_pdf(objects))


def repairable_pdf(path: Path) -> Path:
    """A one-page PDF that MuPDF opens repaired: indexed with a warning (status `partial`)."""
    _broken_xref(path)
    return path


def _broken_xref(path: Path) -> None:
    """Every xref offset is off by 37 bytes: readers must rebuild the table."""
    path.write_bytes(_text_pdf(xref_shift=37))
