"""A person's path through /docs, in real headless Chromium against the real Gunicorn server.

Opens the page, expands ``POST /predict``, presses "Try it out" and "Execute" with the example
body the page offers, and checks the service's answer as the page shows it. Every request the
page makes is recorded: it must stay on the service's own origin (the page works offline).
The screenshot lands in ``reports/docs-browser.png`` for a human to look at.

Chromium is Debian's (``/usr/bin/chromium``), driven by the playwright package; no browser is
downloaded. Without it the test skips, except under ``CI=true``, where it fails: CI must run it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from server import REPO_ROOT, running_server

pytestmark = [pytest.mark.browser, pytest.mark.server]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPO_ROOT / "reports" / "docs-browser.png"
TIMEOUT_MS = 30_000


def chromium_or_skip() -> str:
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path:
        return path
    reason = (f"Chromium not found at {CHROMIUM} or on PATH "
              "(apt-get install -y chromium, or set CHROMIUM_PATH)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}: the browser test must run in CI")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Checked before the server starts, so a skip costs nothing."""
    return chromium_or_skip()


@pytest.fixture(scope="module")
def server(chromium: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("docs_browser"),
                        workers=1) as srv:
        yield srv


def test_predict_can_be_executed_from_the_docs_page(chromium: str, server,
                                                    tiny_model_dir: Path) -> None:
    from playwright import sync_api

    requested: list[str] = []
    console_errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda req: requested.append(req.url))
            page.on("console", lambda msg: console_errors.append(msg.text)
                    if msg.type == "error" else None)

            page.goto(f"{server.url}/docs")
            page.get_by_text("SCL flight delay service").first.wait_for()
            operation = page.locator("#operations-prediction-predict")
            operation.locator(".opblock-summary").click()
            operation.get_by_role("button", name="Try it out").click()
            with page.expect_response(lambda r: r.url.startswith(f"{server.url}/predict")
                                      and r.request.method == "POST") as answer:
                operation.get_by_role("button", name="Execute").click()
            response = answer.value
            assert response.status == 200
            body = response.json()

            # What the page shows a person: the status code and the body it received.
            live = operation.locator(".live-responses-table tr.response")
            shown = live.locator(".response-col_status").first
            shown.wait_for()
            assert shown.inner_text().strip().startswith("200")
            shown_body = operation.locator(".live-responses-table .microlight").first
            shown_body.wait_for()
            assert "delay_probability" in shown_body.inner_text()
            shown_body.scroll_into_view_if_needed()
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()

    prediction = body["predictions"][0]
    assert 0.0 <= prediction["delay_probability"] <= 1.0
    assert prediction["delayed"] == (prediction["delay_probability"] >= body["threshold"])
    metadata = json.loads((tiny_model_dir / "metadata.json").read_text())
    assert body["model_version"] == metadata["model_version"]
    outside = [url for url in requested
               if not url.startswith((server.url, "data:", "blob:"))]
    assert outside == [], f"the docs page reached beyond the service: {outside}"
    assert console_errors == [], f"browser console errors: {console_errors}"
    assert SCREENSHOT.stat().st_size > 10_000
