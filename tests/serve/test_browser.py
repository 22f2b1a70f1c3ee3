"""The page as a person uses it, in a real headless Chromium (Debian's package) driven by
Playwright, against the app served by uvicorn on 127.0.0.1: choose a photo, see its garments,
click one, get the grid of its shop items. Every request the browser makes to anywhere else is
blocked and recorded: the page must work offline. Skipped where Chromium or Playwright is
missing (`.ci/run` installs Chromium)."""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from matchrcnn.serve.app import ServeSettings, create_app
from matchrcnn.serve.service import SearchService
from tests.serve.conftest import TOKEN, LiveServer, search

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
"""What Chromium needs to run headless as root on a machine with no network (Playwright adds
--headless; the profile is a fresh --user-data-dir)."""
TOPK = 6

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="Playwright is not installed (pip install -e '.[test]')")
if shutil.which(CHROMIUM) is None:
    pytest.skip(f"Chromium is not installed ({CHROMIUM}; apt-get install chromium, as .ci/run "
                f"does)", allow_module_level=True)


class Browser:
    """A fresh Chromium profile; ``outside`` lists every request that did not go to ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outside: list[str] = []

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory()
        self._playwright = sync_api.sync_playwright().start()
        self.context = self._playwright.chromium.launch_persistent_context(
            self._profile.name, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 1000})
        self.context.route("**/*", self._only_the_service)
        self.page = self.context.new_page()
        return self

    def _only_the_service(self, route) -> None:
        if route.request.url.startswith(f"{self.url}/"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def __exit__(self, *exc: object) -> None:
        self.context.close()
        self._playwright.stop()
        self._profile.cleanup()


@pytest.fixture
def browser(live_url: str) -> Iterator[Browser]:
    with Browser(live_url) as browser:
        yield browser


def grid_items(page) -> list[dict]:
    return page.eval_on_selector_all("#grid figure", """figures => figures.map(f => ({
        item_id: Number(f.dataset.itemId), category_id: Number(f.dataset.categoryId),
        caption: f.querySelector("figcaption").innerText}))""")


def test_choose_a_photo_click_a_garment_see_its_shop_items(browser: Browser, client: TestClient,
                                                           user_photo: Path,
                                                           tmp_path: Path) -> None:
    reference = search(client, user_photo, topk=TOPK, min_score=0.0).json()
    assert len(reference["items"]) > 1
    page = browser.page
    page.goto(f"{browser.url}/")
    page.wait_for_selector("#category option:nth-child(14)", state="attached")
    assert "shop items from" in page.inner_text("#gallery-info")
    page.fill("#topk", str(TOPK))
    page.fill("#min-score", "0")
    page.set_input_files("#photo", str(user_photo))
    page.wait_for_function(f"document.querySelectorAll('#overlay .garment').length == "
                           f"{len(reference['items'])}")
    assert page.locator("#garments button").count() == len(reference["items"])

    # the garment drawn last lies on top of the others: a click on it reaches it
    chosen = len(reference["items"]) - 1
    page.locator("#overlay .garment").nth(chosen).click()
    page.wait_for_function(f"document.querySelector('#matches-title').innerText"
                           f".startsWith('Garment {chosen + 1} ')")
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every("
                           "image => image.complete && image.naturalWidth > 0)")
    expected = reference["items"][chosen]["retrieved"]
    shown = grid_items(page)
    assert len(shown) == TOPK == len(expected)
    assert [item["item_id"] for item in shown] == [hit["item_id"] for hit in expected]
    for item, hit in zip(shown, expected, strict=True):
        assert f"#{hit['rank']} p = {hit['match_score']:.3f}" in item["caption"]
        assert hit["category"].replace("_", " ") in item["caption"]
    assert page.locator("#overlay .garment.selected").count() == 1
    page.screenshot(path=str(tmp_path / "search_page.png"), full_page=True)

    # the category filter keeps the shop items of one category, in their order
    category = expected[0]["category_id"]
    page.select_option("#category", str(category))
    kept = [hit["item_id"] for hit in expected if hit["category_id"] == category]
    assert [item["item_id"] for item in grid_items(page)] == kept
    assert f"{len(kept)} of {TOPK} shop items" in page.inner_text("#matches-title")
    page.select_option("#category", "")

    # another garment, chosen from the list, shows its own items
    page.locator("#garments button").nth(0).click()
    first = [hit["item_id"] for hit in reference["items"][0]["retrieved"]]
    page.wait_for_function(f"document.querySelector('#grid figure')?.dataset.itemId == "
                           f"'{first[0]}'")
    assert [item["item_id"] for item in grid_items(page)] == first
    assert browser.outside == []


def test_a_dropped_photo_is_searched_and_a_bad_one_explained(browser: Browser, user_photo: Path,
                                                              tmp_path: Path) -> None:
    page = browser.page
    page.goto(f"{browser.url}/")
    page.fill("#min-score", "0")
    encoded = base64.b64encode(user_photo.read_bytes()).decode()
    page.evaluate("""([name, encoded]) => {
        const bytes = Uint8Array.from(atob(encoded), c => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], name, {type: "image/jpeg"}));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
    }""", [user_photo.name, encoded])
    page.wait_for_selector("#grid figure")
    assert "garments found" in page.inner_text("#status")

    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    page.set_input_files("#photo", str(notes))
    page.wait_for_selector("#status.error")
    assert "notes.jpg: not an image file" in page.inner_text("#status")
    assert page.locator("#result").is_hidden()
    assert browser.outside == []


def test_api_docs_render_offline(browser: Browser) -> None:
    page = browser.page
    page.goto(f"{browser.url}/docs")
    page.wait_for_selector(".opblock-summary-path[data-path=\"/api/search\"]")
    assert page.locator(".opblock").count() >= 5
    assert browser.outside == []


def test_with_a_token_the_page_works_once_opened_with_it(service: SearchService,
                                                         user_photo: Path) -> None:
    with (LiveServer(create_app(service, ServeSettings(token=TOKEN))) as server,
          Browser(server.url) as browser):
        page = browser.page
        assert page.goto(f"{server.url}/").status == 401
        assert "access token" in page.inner_text("body")
        assert page.goto(f"{server.url}/?token={TOKEN}").status == 200
        assert page.url == f"{server.url}/"  # the token has left the address bar
        page.wait_for_selector("#category option:nth-child(14)", state="attached")
        page.fill("#min-score", "0")
        page.set_input_files("#photo", str(user_photo))
        page.wait_for_selector("#grid figure")
        page.wait_for_function("[...document.querySelectorAll('#grid img')].every("
                               "image => image.complete && image.naturalWidth > 0)")
        assert browser.outside == []
