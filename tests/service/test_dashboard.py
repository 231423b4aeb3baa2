"""The order dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
against a real ``hook-processor serve``, asserting what a person sees.

Without chromium or playwright these tests skip, and fail under ``CI=true`` (``.ci/run`` installs
chromium). The screenshot of the orders is kept in the test's tmp dir; with
``DASHBOARD_SCREENSHOT=docs/dashboard.png`` it is written there too (the README's picture).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import ApiServer, order_service
from serve_process import HELLO_WORLD, Served, hello_body, odp_test_body, put_input, serving
from service_support import copy_project

from hook_processor.s3server import S3Server
from hook_processor.service.store import Store

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"
SECRET = "in-secret-never-shown"  # hello_body's source_s3_secret_key
SLOW = "slow odp-test"
WAIT = 60_000  # ms: the longest a person would watch for a change (a loaded machine)
# A processor whose log line and failure message are markup: the page must show them as text.
HOSTILE_PROCESSOR = """
from pathlib import Path
from hook_processor import Context

def process(input_dir: Path, output_dir: Path, context: Context) -> None:
    context.logger.info("<script>alert('log')</script>")
    raise ValueError("<b onmouseover=alert(2)>bold</b>")
"""

# Every visible text node's colour against the background it is drawn on (the first opaque one up
# the tree): the lowest contrast ratio on the page and where it is (WCAG 2 relative luminance).
LOWEST_CONTRAST = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => { for (; el; el = el.parentElement) {
    const c = rgb(getComputedStyle(el).backgroundColor); if (c.length < 4 || c[3] > 0) return c; }
    return [255, 255, 255]; };
  let lowest = [99, ""];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    const hidden = !el.checkVisibility() || el.closest(".visually-hidden");
    if (!node.textContent.trim() || hidden) continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < lowest[0]) lowest = [ratio, node.textContent.trim().slice(0, 40)];
  }
  return lowest;
}"""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(message: str) -> None:
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium under Playwright (its own browsers cannot be downloaded here)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _unavailable("no chromium on PATH: apt-get install chromium (.ci/run does)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("playwright is missing: pip install -e '.[dev]'")
    expect.set_options(timeout=WAIT)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(WAIT)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def console(message: Any) -> None:
        # The browser logs every 4xx answer (a log not there yet, an expired token): expected.
        # Anything else logged as an error (a Content-Security-Policy refusal) is a problem.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(f"console: {message.text}")

    opened.on("console", console)
    opened.on(
        "dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
    )
    opened.problems = problems  # type: ignore[attr-defined]
    yield opened
    context.close()


def _base(served: Served) -> str:
    return served.root.removesuffix("odata/v1/")


def _order_row(page: Any, order_id: int) -> Any:
    return page.locator(f"#orders-body tr[data-key='{order_id}']")


def _save_screenshot(page: Any, tmp_path: Path) -> Path:
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    wanted = os.environ.get("DASHBOARD_SCREENSHOT")
    if wanted:
        Path(wanted).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, wanted)
    return shot


def test_two_orders_one_completes_one_is_cancelled_with_the_button(
    page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    hostile = copy_project(tmp_path, "hostile_text", HOSTILE_PROCESSOR)
    args = [str(HELLO_WORLD), str(hostile), "--concurrency", "3"]  # the three orders at once
    with serving(args, tmp_path / "data") as served:
        page.goto(_base(served))
        # No login on 127.0.0.1; the workflows and their options, no orders yet.
        expect(page.get_by_role("heading", name="Orders", exact=True)).to_be_visible()
        expect(page.get_by_text("No orders yet.")).to_be_visible()
        expect(page.locator("#login")).to_be_hidden()
        odp = page.locator("details.workflow", has_text="odp-test — ODP Test")
        odp.locator("summary").click()
        sleep_row = odp.get_by_role("row", name="sleep_time")
        expect(sleep_row).to_contain_text("int")
        expect(sleep_row).to_contain_text("Seconds the item sleeps")

        # Two orders through the API, as a notebook posts them; the page was open all along.
        source = put_input(served)
        done = served.submit(hello_body(served, source, name=HOSTILE))
        failing = served.submit(
            {**hello_body(served, source, name="markup"), "WorkflowName": "hostile_text"}
        )
        slow = served.submit(odp_test_body(SLOW, sleep_time=120))
        expect(_order_row(page, done).locator("td").nth(3)).to_have_text("completed")
        expect(_order_row(page, done)).to_contain_text("1/1")
        expect(_order_row(page, done).locator("time")).to_have_count(2)  # submitted, completed
        expect(_order_row(page, slow).locator("td").nth(3)).to_have_text("in progress")
        expect(_order_row(page, slow)).to_contain_text("0/1")
        rows = page.locator("#orders-body tr")
        expect(rows).to_have_count(3)
        assert [rows.nth(n).get_attribute("data-key") for n in range(3)] == [
            str(slow),
            str(failing),
            str(done),
        ], "newest first"

        # A StatusMessage and a log line that are markup: shown as text.
        page.get_by_role("link", name="markup").click()
        item = page.locator("#items-body tr").first
        expect(item.locator("td").nth(2)).to_have_text("failed")
        expect(item.locator("td").nth(3)).to_contain_text("<b onmouseover=alert(2)>bold</b>")
        expect(page.locator("#log")).to_contain_text("<script>alert('log')</script>")
        assert page.locator("#items-body b, #log script, #log b").count() == 0

        # The hostile name is text: a link of that name, no image, no dialog.
        page.get_by_role("link", name=HOSTILE).click()
        expect(page.get_by_role("heading", name=f"Order {done}: {HOSTILE}")).to_be_visible()
        assert page.locator("img").count() == 0
        item = page.locator("#items-body tr").first
        expect(item.locator("td").nth(2)).to_have_text("completed")
        expect(item).to_contain_text("Processing finished successfully")
        size = item.locator("td").nth(5).inner_text()
        assert size.endswith(" B") or size.endswith("KiB"), size
        expect(page.locator("#log")).to_contain_text("publish: 1 products")
        expect(page.locator("#log")).to_contain_text("ended: exit 0, completed")
        link = item.get_by_role("link", name=f"Download the output of item {done}")
        download = requests.get(link.get_attribute("href"), timeout=30)
        assert download.status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(download.content))
        assert archive.read("example.data").decode().isupper()

        # The slow order: its log grows while it runs; the page's button cancels it.
        page.get_by_role("link", name=SLOW).click()
        expect(page.get_by_role("heading", name=f"Order {slow}: {SLOW}")).to_be_visible()
        expect(page.locator("#log")).to_contain_text("process: calling hook_processor.service")
        expect(page.locator("#log-note")).to_contain_text("the log grows here")
        page.get_by_role("button", name=f"Cancel order {slow}").click()
        expect(page.locator("#cancel-result")).to_contain_text("cancel sent")
        expect(page.locator("#items-body tr").first.locator("td").nth(2)).to_have_text("cancelled")
        expect(_order_row(page, slow).locator("td").nth(3)).to_have_text("cancelled")
        expect(page.get_by_role("button", name=f"Order {slow} is cancelled")).to_be_disabled()
        expect(page.locator("#announce")).to_contain_text(f"Order {slow} ({SLOW}) is now cancelled")
        assert [i["Status"] for i in served.products(slow)] == ["cancelled"]

        # Nothing secret in the page; readable colours; no script error and no dialog.
        assert SECRET not in page.content()
        assert SECRET not in json.dumps(page.evaluate("() => ({...sessionStorage})"))
        ratio, where = page.evaluate(LOWEST_CONTRAST)
        assert ratio >= 4.5, f"contrast {ratio:.2f}:1 at {where!r}"
        assert page.problems == []  # type: ignore[attr-defined]

        page.get_by_role("link", name=HOSTILE).click()
        expect(page.locator("#log")).to_contain_text("ended: exit 0, completed")
        shot = _save_screenshot(page, tmp_path)
        assert shot.stat().st_size > 10_000
        assert served.stop() == 0


def test_with_users_the_page_asks_for_a_login_and_shows_nothing_without_it(
    page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    users = tmp_path / "users.json"
    users.write_text(json.dumps({"ana": "pw-ana"}))
    with serving(["--users", str(users)], tmp_path / "data") as served:
        token = served.token("ana", "pw-ana")

        def submit(name: str, sleep_time: int) -> int:
            answer = requests.post(
                served.root + "BatchOrder/OData.CSC.Order",
                json=odp_test_body(name, sleep_time=sleep_time),
                headers={"Authorization": "Bearer " + token},
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
            order_id: int = answer.json()["value"]["Id"]
            return order_id

        # One order that holds the only worker, then 20 that wait behind it: two pages of orders.
        first = submit("ana's order", sleep_time=120)
        newest = [submit(f"queued {n}", sleep_time=0) for n in range(20)][-1]

        page.goto(_base(served))
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        expect(page.locator("#content")).to_be_hidden()
        body = page.locator("body").inner_text()
        assert "ana's order" not in body and "odp-test" not in body and "queued" not in body

        page.get_by_label("User name").fill("ana")
        page.get_by_label("Password").fill("wrong")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("Not logged in: Invalid user credentials")
        expect(page.locator("#content")).to_be_hidden()
        page.screenshot(path=str(tmp_path / "login.png"))

        page.get_by_label("Password").fill("pw-ana")
        page.get_by_role("button", name="Log in").click()
        expect(_order_row(page, newest)).to_contain_text("queued 19")
        expect(page.locator("#login")).to_be_hidden()
        assert page.get_by_label("Password").input_value() == ""  # the password is not kept
        stored = page.evaluate("() => Object.values(sessionStorage)")
        assert "pw-ana" not in json.dumps(stored) and len(stored) == 1

        # 20 orders a page: the first order is on the second.
        expect(page.locator("#orders-body tr")).to_have_count(20)
        expect(page.locator("#page-info")).to_have_text("Orders 1–20 of 21")
        expect(_order_row(page, first)).to_have_count(0)
        page.get_by_role("button", name="Older orders").click()
        expect(_order_row(page, first)).to_contain_text("ana's order")
        expect(_order_row(page, first).locator("td").nth(3)).to_have_text("in progress")
        expect(page.locator("#orders-body tr")).to_have_count(1)
        expect(page.locator("#page-info")).to_have_text("Orders 21–21 of 21")
        expect(page.get_by_role("button", name="Older orders")).to_be_hidden()
        page.get_by_role("button", name="Newer orders").click()
        expect(page.locator("#orders-body tr")).to_have_count(20)

        page.reload()  # the tab keeps its token
        expect(_order_row(page, newest)).to_contain_text("queued 19")
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        expect(page.locator("#content")).to_be_hidden()
        assert page.problems == []  # type: ignore[attr-defined]


def test_an_expired_token_is_replaced_on_loopback_and_asked_for_again_behind_a_login(
    page: Any, tmp_path: Path, s3_server: S3Server
) -> None:
    from playwright.sync_api import expect

    def stored_token() -> str:
        kept = page.evaluate("() => Object.values(sessionStorage)")
        return str(json.loads(kept[0])["token"]) if kept else ""

    store = Store(tmp_path / "local" / "hook.sqlite3")
    local = ApiServer(
        order_service(store, s3_server),
        store,
        s3=s3_server,
        dashboard_login=False,
        token_lifetime=1,
    )
    try:
        page.goto(local.url + "/")
        expect(page.locator("#updated")).to_contain_text("nothing is running")
        first = stored_token()
        page.wait_for_timeout(1500)  # the token has expired
        page.get_by_role("button", name="Refresh now").click()
        page.wait_for_function(
            "old => { const kept = Object.values(sessionStorage)[0]; "
            "return Boolean(kept) && !kept.includes(old); }",
            arg=first,
        )
        expect(page.locator("#updated")).to_contain_text("nothing is running")
        expect(page.locator("#login")).to_be_hidden()
        assert stored_token() not in ("", first)
    finally:
        local.stop()

    store = Store(tmp_path / "guarded" / "hook.sqlite3")
    guarded = ApiServer(
        order_service(store, s3_server),
        store,
        s3=s3_server,
        users={"ana": "pw"},
        token_lifetime=1,
    )
    try:
        page.goto(guarded.url + "/")
        page.get_by_label("User name").fill("ana")
        page.get_by_label("Password").fill("pw")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#updated")).to_contain_text("nothing is running")
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Refresh now").click()
        expect(page.get_by_role("alert")).to_have_text("Your session has ended: log in again.")
        expect(page.locator("#content")).to_be_hidden()
        assert stored_token() == ""
    finally:
        guarded.stop()
    assert page.problems == []  # type: ignore[attr-defined]
