"""The progress page when something is wrong, in a real headless Chromium (as test_browser).

The page must say what is wrong instead of staying on "loading…": the Socket.IO client
script missing (the head answers 503 for it), a socket that cannot connect, the sign-in
and no-access screens, and a start that the head refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from core.jobs import create_job
from core.workspaces import create_workspace
from head.routes import pages
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, open_page, state_of

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture(scope="module")
async def browser() -> Any:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def owner_workspace(db: Any) -> str:
    return str(await create_workspace(db, name="Docs", owner_id="alice", member_ids=[]))


async def problem_says(page: Page, text: str) -> None:
    await page.wait_for_function(
        "(text) => !document.getElementById('problem').hidden"
        " && document.getElementById('problem').textContent.includes(text)",
        arg=text,
        timeout=20_000,
    )


async def test_missing_socket_client_is_shown(
    browser, head, db, session_cookie, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(pages, "ASSET_ROOTS", (tmp_path,))  # no node_modules there: 503
    workspace_id = await owner_workspace(db)
    page = await open_page(browser, head, session_cookie("alice"), workspace_id)
    await problem_says(page, "Live updates unavailable")
    assert "npm ci" in await page.inner_text("#problem")
    await state_of(page, "idle")  # the state comes from REST all the same
    assert await page.inner_text("#status") == "idle"


async def test_socket_that_cannot_connect_is_shown(browser, head, db, session_cookie) -> None:
    workspace_id = await owner_workspace(db)
    context = await browser.new_context()
    name, value = session_cookie("alice").split("=", 1)
    await context.add_cookies([{"name": name, "value": value, "url": head.url}])
    page = await context.new_page()
    # the network refuses Socket.IO (a proxy that drops it), both transports
    await page.route("**/socket.io/**", lambda route: route.abort())
    await page.route_web_socket("**/socket.io/**", lambda ws: ws.close())
    await page.goto(f"{head.url}/workspaces/{workspace_id}")
    await problem_says(page, "cannot connect to the indexer")
    await state_of(page, "idle")
    assert await page.inner_text("#connection") == "offline"


async def test_sign_in_and_no_access_screens_leave_loading(
    browser, head, db, session_cookie
) -> None:
    workspace_id = await owner_workspace(db)
    anonymous = await open_page(browser, head, None, workspace_id)
    await state_of(anonymous, "signin")
    assert await anonymous.inner_text("#status") == "sign-in required"
    stranger = await open_page(browser, head, session_cookie("mallory"), workspace_id)
    await state_of(stranger, "noaccess")
    assert await stranger.inner_text("#status") == "no access"


async def test_start_sends_json_and_shows_a_refusal(browser, head, db, session_cookie) -> None:
    workspace_id = await owner_workspace(db)
    # a run is going (so this click starts nothing): the head answers 409
    await create_job(db, workspace_id, mode="local", requested_by="alice")
    page = await open_page(browser, head, session_cookie("alice"), workspace_id)
    await state_of(page, "idle")
    async with page.expect_response(lambda r: r.url.endswith("/index")) as answer:
        await page.click("#start")
    response = await answer.value
    assert response.request.headers["content-type"] == "application/json"
    assert response.status == 409
    await problem_says(page, "Indexing is already running")
