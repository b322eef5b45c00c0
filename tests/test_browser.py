"""The progress page in a real headless Chromium (Debian's), driven by Playwright.

The NextAuth cookie is set in the browser; the page talks to a real head, MongoDB and, for
the run, a real local Ray started by the head's child process. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from cluster.documents import add_document
from cluster.sample_corpus import write_sample_pdf
from core.workspaces import create_workspace

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PLANTED = "The zebra quartz protocol calibrates violet harmonics before every checkpoint."
# Pages of the generated documents of the full run (the planted one adds a page).
RUN_DOCUMENT_PAGES = [12, 12, 11]


@pytest.fixture(scope="module")
async def browser() -> Any:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def open_page(browser: Browser, head: Any, cookie: str | None, workspace_id: str) -> Page:
    context = await browser.new_context()
    if cookie:
        name, value = cookie.split("=", 1)
        await context.add_cookies([{"name": name, "value": value, "url": head.url}])
    page = await context.new_page()
    await page.goto(f"{head.url}/workspaces/{workspace_id}")
    return page


async def state_of(page: Page, expected: str, timeout_s: float = 30) -> None:
    await page.wait_for_function(
        f"document.getElementById('app').dataset.state === {expected!r}", timeout=timeout_s * 1000
    )


async def test_access_states(browser, head, db, session_cookie) -> None:
    workspace_id = str(
        await create_workspace(db, name="Docs", owner_id="alice", member_ids=["bob"])
    )
    anonymous = await open_page(browser, head, None, workspace_id)
    await state_of(anonymous, "signin")
    assert "Sign in required" in await anonymous.inner_text("#message")
    stranger = await open_page(browser, head, session_cookie("mallory"), workspace_id)
    await state_of(stranger, "noaccess")
    assert "No access" in await stranger.inner_text("#message")
    viewer = await open_page(browser, head, session_cookie("bob"), workspace_id)
    await state_of(viewer, "idle")
    assert await viewer.is_hidden("#start")
    owner = await open_page(browser, head, session_cookie("alice"), workspace_id)
    await state_of(owner, "idle")
    assert await owner.is_visible("#start")
    await owner.wait_for_function(
        "document.getElementById('connection').textContent === 'connected'"
    )


async def test_expired_session_is_shown(browser, head, db, session_cookie) -> None:
    workspace_id = str(await create_workspace(db, name="Docs", owner_id="alice", member_ids=[]))
    page = await open_page(browser, head, session_cookie("alice", expires_in_s=3), workspace_id)
    await state_of(page, "expired", timeout_s=25)
    assert "Session expired" in await page.inner_text("#message")


async def workspace_for_run(db: Any, folder: Path) -> str:
    workspace_id = str(await create_workspace(db, name="Run", owner_id="alice", member_ids=[]))
    for index, pages in enumerate(RUN_DOCUMENT_PAGES):
        path = folder / f"doc-{index}.pdf"
        write_sample_pdf(path, "Document indexing", pages, seed=40 + index)
        await add_document(db, workspace_id, str(path), max_bytes=10**9)
    planted = folder / "planted.pdf"
    import pymupdf

    document = pymupdf.open()
    document.new_page().insert_textbox(pymupdf.Rect(50, 50, 550, 800), PLANTED, fontsize=12)
    document.save(planted)
    await add_document(db, workspace_id, str(planted), max_bytes=10**9)
    return workspace_id


async def test_full_run_reconnect_and_search(
    browser, settings, head_processes, start_head, db, session_cookie, tmp_path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    head = await asyncio.to_thread(head_processes, settings)
    workspace_id = await workspace_for_run(db, tmp_path)
    page = await open_page(browser, head, session_cookie("alice"), workspace_id)
    await state_of(page, "idle")
    await page.click("#start")
    await state_of(page, "indexing", timeout_s=60)
    # Cut the connection mid-run: the head is killed, a new one starts on the same port.
    # The run goes on in the killed head's driver, on its Ray (both outlive it). Cut as the
    # run starts (its Ray is still loading the model), so that its last events come after
    # the page is back: events published while no head is up are lost by design (the page
    # refetches the state instead), and this test wants to see `index:ready`.
    head.kill()
    await page.wait_for_function("document.getElementById('connection').textContent === 'offline'")
    start_head(settings)
    await page.wait_for_function(
        "Number(document.getElementById('bar').value) > 0", timeout=240_000
    )
    await page.screenshot(path=str(ARTIFACTS / "progress-mid-run.png"), full_page=True)
    await state_of(page, "ready", timeout_s=300)
    await page.screenshot(path=str(ARTIFACTS / "progress-ready.png"), full_page=True)

    workspace = await db.workspaces.find_one({})
    assert workspace["indexStatus"] == "ready"
    pages = sum(RUN_DOCUMENT_PAGES) + 1  # and the planted page
    assert workspace["pageCount"] == pages
    assert await page.inner_text("#pages") == f"{pages} / {pages}"
    assert await page.is_hidden("#stalled")
    record = await page.evaluate(
        "({gaps: indexerPage.gaps, events: indexerPage.events, bar: indexerPage.barValues})"
    )
    assert record["gaps"] == 0
    by_epoch: dict[str, list[int]] = {}
    for event in record["events"]:
        by_epoch.setdefault(event["epoch"], []).append(event["seq"])
    for seqs in by_epoch.values():  # no missed seq within an epoch
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert record["events"][-1]["name"] == "index:ready"
    values = [v for v in record["bar"] if v > 0]
    assert values == sorted(values), "the bar moved backwards"

    await page.fill("#q", "zebra quartz protocol violet harmonics")
    started = time.monotonic()
    await page.click("#search-form button")
    await page.wait_for_selector("#results li", timeout=60_000)
    first = await page.inner_text("#results li:first-child")
    assert "zebra quartz protocol" in first
    assert "planted.pdf, page 1" in first
    print(f"\nsearch round trip in the page: {time.monotonic() - started:.2f}s")
    href = await page.get_attribute("#results li:first-child a", "href")
    image = await page.request.get(f"{head.url}{href}")
    assert image.status == 200
    assert (await image.body())[:8] == b"\x89PNG\r\n\x1a\n"
    await page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)


async def test_removed_member_is_kicked_on_a_second_head(
    browser, redis_heads, db, session_cookie
) -> None:
    first, second = redis_heads(2)
    workspace_id = str(
        await create_workspace(db, name="Docs", owner_id="alice", member_ids=["bob"])
    )
    page = await open_page(browser, second, session_cookie("bob"), workspace_id)
    await state_of(page, "idle")
    await page.wait_for_function(
        "document.getElementById('connection').textContent === 'connected'"
    )
    removed_at = time.monotonic()
    await db.workspaces.update_one({}, {"$set": {"members": []}})
    await state_of(page, "noaccess", timeout_s=10)
    assert time.monotonic() - removed_at < 5 + 1  # within the 5 s promise, plus page time
    assert first.url != second.url
