"""The dashboard in a real headless Chromium (Debian's `chromium`, installed
by `make browser`; never a downloaded browser): log in, upload a CSV, watch
the counters move, press Stop and see the campaign stop.

Set SMSGW_SCREENSHOT=docs/dashboard.png to keep a picture of the page.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.dashboard_auth import hash_password
from spool.base import State
from tests.conftest import Running, loopback_channel
from tests.test_stats import create, send

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]
PASSWORD = "browser-pass-1"
ROWS = 60


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make browser` installs Debian's package")
        pytest.skip("chromium is not installed (make browser)")
    pytest.importorskip("playwright.async_api")
    return CHROMIUM


def _csv() -> bytes:
    rows = [f"promo;0983{i:05d};hola {i};" for i in range(ROWS)]
    return ("campaign;destination;message;priority\n" + "\n".join(rows) + "\n").encode()


async def _gateway(make_gateway: Any) -> Running:
    gw = await make_gateway(
        dashboard={"users": [{"name": "admin", "password_hash": hash_password(PASSWORD)}],
                   "sample_interval_s": 0.2},
        # Slow channels: a batch takes seconds, so Stop lands mid-campaign.
        channels=[loopback_channel("modem-1", latency_ms=200, concurrency=1),
                  loopback_channel("modem-2", latency_ms=200, concurrency=1),
                  loopback_channel("modem-3", enabled=False),
                  loopback_channel("flaky", transient_failure_rate=1.0, block_after=2)])
    await create(gw, "promo", channels=["modem-1", "modem-2"])
    await create(gw, "weekend", enabled=False)
    # A campaign whose only channel keeps failing: the page must say so.
    await create(gw, "alerts", channels=["flaky"])
    await send(gw, "alerts", 2, start=900)
    return gw


async def _counter(page: Any, campaign: str, key: str) -> int:
    text = await page.text_content(f'[data-campaign="{campaign}"] [data-key="{key}"]')
    return int(text or "0")


@pytest.mark.timeout(180)
async def test_operator_flow_in_headless_chromium(make_gateway, chromium: str,
                                                  backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("one backend is enough for the browser")
    from playwright.async_api import async_playwright

    gw = await _gateway(make_gateway)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            page.set_default_timeout(20_000)
            await _log_in(page, gw)
            await _upload_and_watch(page, gw)
            await _stop_and_see_it_stop(page, gw)
            await _dncr_and_single_message(page)
            assert await page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth + 1"), \
                "the page scrolls sideways at phone width"
            await _screenshot(page)
        finally:
            await browser.close()


async def _log_in(page: Any, gw: Running) -> None:
    await page.goto(gw.url + "/")
    await page.fill("#login-form [name=user]", "admin")
    await page.fill("#login-form [name=password]", "wrong")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#login-error:has-text('wrong user or password')")
    await page.fill("#login-form [name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#app-view", state="visible")
    await page.wait_for_selector('[data-campaign="promo"] .badge:has-text("idle")')
    await page.wait_for_selector("#attention:has-text('alerts: Every channel of its pool')")
    await page.wait_for_selector("#failures:has-text('simulated transient failure')")


async def _upload_and_watch(page: Any, gw: Running) -> None:
    await page.set_input_files("#messages-upload input[type=file]", files=[
        {"name": "promo.csv", "mimeType": "text/csv", "buffer": _csv()}])
    await page.click("#messages-upload button[type=submit]")
    await page.wait_for_selector(f"#messages-upload .result:has-text('Imported {ROWS}')")
    await page.wait_for_selector('[data-campaign="promo"] .badge:has-text("sending")')
    await page.wait_for_function(
        """() => Number(document.querySelector('[data-campaign="promo"] [data-key="processed"]')
                 .textContent) >= 4""")
    assert await _counter(page, "promo", "not_processed") < ROWS


async def _stop_and_see_it_stop(page: Any, gw: Running) -> None:
    await page.click('[data-campaign="promo"] button.toggle:has-text("Stop")')
    await page.wait_for_selector('[data-campaign="promo"] .badge:has-text("stopped")')
    await page.wait_for_selector('[data-campaign="promo"] button.toggle:has-text("Start")')
    await page.wait_for_selector("#attention:has-text('promo: Stopped')")
    # What a channel had already started finishes; nothing new is claimed.
    # The page polls every 2 s: wait past a poll before each reading.
    await page.wait_for_timeout(2500)
    settled = await _counter(page, "promo", "processed")
    await page.wait_for_timeout(2500)
    assert await _counter(page, "promo", "processed") == settled
    assert settled < ROWS
    counts = {c.campaign: c.by_state for c in await gw.store.counts()}
    promo = await gw.store.campaign_by_name(1, "promo")
    assert counts[promo.id].get(int(State.TO_PROCESS), 0) == ROWS - settled


async def _dncr_and_single_message(page: Any) -> None:
    await page.set_input_files("#dncr-upload input[type=file]", files=[
        {"name": "dncr.csv", "mimeType": "text/csv", "buffer": b"098300001;\n098300002;promo\n"}])
    await page.click("#dncr-upload button[type=submit]")
    await page.wait_for_selector("#dncr-upload .result:has-text('Added 2 of 2')")
    await page.fill("#send-form [name=destination]", "098344484")
    await page.select_option("#send-form [name=campaign]", "default")
    await page.fill("#send-form [name=message]", "hola desde el panel")
    await page.click("#send-form button[type=submit]")
    await page.wait_for_selector("#send-form .result:has-text('Queued as #')")


async def _screenshot(page: Any) -> None:
    target = os.environ.get("SMSGW_SCREENSHOT")
    if not target:
        return
    await page.screenshot(path=target.replace(".png", "-phone.png"), full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.wait_for_timeout(2500)  # one more poll at the new width
    await page.screenshot(path=target, full_page=True)
