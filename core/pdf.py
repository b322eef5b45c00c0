"""PDF bytes checked and opened: the rules `indexer add`, the fetch actors and the parser
actors share, with no Ray.

PyMuPDF is imported here, lazily, and without its add-ons: PyMuPDF 2.0 imports
`pymupdf.layout` and `pymupdf4llm` (which import onnxruntime) whenever they are installed,
which costs CPU in every parser process as it starts, and the indexer does its own layout
(`actors.layout`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from core.errors import DocumentError

if TYPE_CHECKING:
    import pymupdf

OPTIONAL_ADD_ONS = ("pymupdf.layout", "pymupdf4llm")
PDF_MAGIC = b"%PDF-"
# The PDF header may follow some junk; readers accept it within the first kilobyte.
PDF_MAGIC_WINDOW_BYTES = 1024
PDF_EOF = b"%%EOF"
PDF_EOF_WINDOW_BYTES = 2048
UNREADABLE_PAGES_LISTED = 10


def load_pymupdf() -> ModuleType:
    """PyMuPDF without `pymupdf.layout` and `pymupdf4llm` (which imports onnxruntime): a None
    entry in sys.modules makes their import fail, which PyMuPDF expects (both add-ons are
    optional) and handles by leaving them out."""
    for optional in OPTIONAL_ADD_ONS:
        sys.modules.setdefault(optional, None)
    import pymupdf

    return pymupdf


def open_pdf(data: bytes) -> pymupdf.Document:
    """Open PDF bytes, translating PyMuPDF's errors into a DocumentError."""
    pymupdf = load_pymupdf()
    try:
        return pymupdf.open(stream=data, filetype="pdf")
    except (pymupdf.FileDataError, RuntimeError, ValueError) as exc:
        raise DocumentError("fetch", f"corrupt: not a readable PDF ({exc})") from None


def check_pdf_bytes(data: bytes, max_bytes: int) -> None:
    """Size and content-type checks shared by `indexer add` and the fetch phase."""
    if not data:
        raise DocumentError("fetch", "empty: the file has zero bytes")
    if len(data) > max_bytes:
        raise DocumentError("fetch", f"too large: {len(data)} bytes, limit {max_bytes}")
    if PDF_MAGIC not in data[:PDF_MAGIC_WINDOW_BYTES]:
        raise DocumentError("fetch", "not a PDF: no %PDF- header")


def inspect_pdf(data: bytes, max_pages: int) -> tuple[int, str | None]:
    """Page count and an optional warning; DocumentError when the PDF cannot be indexed.

    PyMuPDF opens a truncated or damaged file "repaired", often with blank pages: such a
    file with no text and no images at all is refused; one with content is indexed with a
    warning (status `partial`). A file cut short (no `%%EOF` near its end) says so. Pages
    whose page object cannot be loaded (nested too deep, broken references) would come out
    blank without a word from MuPDF: they are named in the warning, or fail the document
    when no page is left. More than `max_pages` pages are refused before any page is read.
    """
    truncated = PDF_EOF not in data[-PDF_EOF_WINDOW_BYTES:]
    try:
        document = open_pdf(data)
    except DocumentError:
        if truncated:
            raise DocumentError("fetch", "truncated: the file ends before %%EOF") from None
        raise
    try:
        if document.needs_pass:
            raise DocumentError("fetch", "encrypted: a password is required to open it")
        if document.page_count == 0:
            raise DocumentError("fetch", "empty: the PDF has no pages")
        if document.page_count > max_pages:
            raise DocumentError(
                "fetch",
                f"too many pages: {document.page_count}; the limit is {max_pages} "
                "(INDEXER_MAX_PAGES)",
            )
        warnings = [_repair_warning(document, truncated), _unreadable_pages_warning(document)]
        return document.page_count, "; ".join(w for w in warnings if w) or None
    finally:
        document.close()


def _unreadable_pages_warning(document: Any) -> str | None:
    """Names the pages whose page object MuPDF cannot load; fails when none can be."""
    unreadable: list[int] = []
    reason = ""
    for number in range(document.page_count):
        try:
            document.xref_get_keys(document.page_xref(number))
        except Exception as exc:  # FzErrorLimit "exception stack overflow!", broken objects
            unreadable.append(number + 1)
            reason = reason or str(exc)
    if not unreadable:
        return None
    if len(unreadable) == document.page_count:
        raise DocumentError("fetch", f"damaged: no page can be read ({reason})")
    listed = ", ".join(str(n) for n in unreadable[:UNREADABLE_PAGES_LISTED])
    more = len(unreadable) - UNREADABLE_PAGES_LISTED
    listed += f" and {more} more" if more > 0 else ""
    pages, are = ("page", "is") if len(unreadable) == 1 else ("pages", "are")
    return f"damaged: {pages} {listed} cannot be read ({reason}) and {are} left blank"


def _repair_warning(document: Any, truncated: bool) -> str | None:
    """A repaired or truncated file is indexed with a warning if any content is left."""
    if not document.is_repaired and not truncated:
        return None
    has_content = any(page.get_text().strip() or page.get_images() for page in document)
    damage = "truncated" if truncated else "damaged"
    if not has_content:
        raise DocumentError("fetch", f"{damage}: repaired on open, no content left")
    return f"{damage}: repaired on open; some pages may be missing"


def read_local_file(source: str, max_bytes: int) -> bytes:
    """A local path or `file://` URL, refused before reading when over `max_bytes`."""
    parts = urlsplit(source)
    path = Path(unquote(parts.path)) if parts.scheme == "file" else Path(source)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DocumentError("fetch", f"too large: {size} bytes, limit {max_bytes}")
        return path.read_bytes()
    except OSError as exc:
        raise DocumentError("fetch", f"cannot read {path.name}: {exc.strerror}") from None
