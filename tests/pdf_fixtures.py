"""Hand-made PDFs for the pipeline tests: good ones from the sample generator, bad ones
(corrupt, encrypted, zero bytes, truncated) built the way they occur in the wild."""

from __future__ import annotations

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
