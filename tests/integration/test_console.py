"""The web console in a real browser: Debian's headless Chromium driven by Playwright.

The API runs under gunicorn, rounds run on real Celery workers against the simulator, and the
pages talk to the JSON API with the key the test signs in with. Screenshots of each page go to
``tests/artifacts/console/`` (ignored by git) for a person to look at.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
import pytest

from api.admin import fleet_breakers
from shared import records
from shared.keys import issue_key
from tests.conftest import CHAIRMAN, MEMBERS
from tests.support.processes import start_api

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no browser: install Debian's chromium "
                       "package (apt-get install chromium) to run the console tests"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
ROUND_S = 60  # a round that has not finished on the page by then has failed the test
MEMBER_IDS = MEMBERS.split(",")
XSS_QUESTION = ('<img src=x onerror="window.__xss=1"><script>window.__xss=1</script> '
                "Why is the sky **blue**?")
ALLOWED_MARKDOWN_TAGS = {"P", "STRONG", "EM", "CODE", "PRE", "UL", "OL", "LI", "H4", "H5", "H6"}
ADMIN_KEY = "llmc_console_" + secrets.token_urlsafe(16)


@pytest.fixture
def environ(environ):
    return {**environ, "API_KEY": ADMIN_KEY}


@pytest.fixture
def api_url(environ):
    process, url = start_api(environ)
    yield url
    process.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield browser
        browser.close()


class Tab:
    """One browser tab on the console, recording every script error and refused resource."""

    def __init__(self, page, name: str) -> None:
        self.page = page
        self.name = name
        self.problems: list[str] = []
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", lambda message: message.type == "error" and self.problems.append(
            f"console: {message.text}"))
        page.set_default_timeout(15_000)

    def sign_in(self, key: str) -> None:
        self.page.goto("/console/sessions")
        self.page.wait_for_url(re.compile(r"/console/login\?next="))
        self.page.fill("#api-key", key)
        self.page.click("#login-form button")
        self.page.wait_for_url(re.compile(r"/console/sessions$"))

    def shot(self, what: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{what}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def tab(request, browser, api_url):
    context = browser.new_context(base_url=api_url, viewport={"width": 1280, "height": 900})
    yield Tab(context.new_page(), request.node.name.removeprefix("test_")[:40])
    context.close()


def expect(locator):
    return playwright_api.expect(locator)


def test_a_question_asked_in_the_console_is_followed_live_to_its_synthesis(tab, worker):
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    page.goto("/console/new")
    expect(page.locator("#members input:checked")).to_have_count(len(MEMBER_IDS))
    expect(page.locator("#chairman")).to_have_value(CHAIRMAN)
    page.fill("#question", XSS_QUESTION)
    page.click("#ask")
    page.wait_for_url(re.compile(r"/console/sessions/[0-9a-f]{32}$"))

    # No worker runs yet: the round waits in the queue, and the page says so.
    expect(page.locator("#status")).to_have_text("queued")
    expect(page.locator(".synthesis.pending")).to_be_visible()
    page.evaluate("window.__same_page = true")
    tab.shot("queued")

    worker()
    synthesis = page.locator(".synthesis .markdown")
    expect(synthesis).to_contain_text("simulated synthesis", timeout=ROUND_S * 1000)
    expect(page.locator("#status")).to_have_text("completed")
    assert page.evaluate("window.__same_page") is True  # updated in place, never reloaded
    expect(page.locator(".answer")).to_have_count(len(MEMBER_IDS))
    expect(page.locator(".ballots li")).to_have_count(len(MEMBER_IDS))
    expect(page.locator(".ranking-chart rect.bar")).to_have_count(len(MEMBER_IDS))
    expect(page.locator(".ranking-chart")).to_contain_text("disagreement")
    expect(page.locator("#usage")).to_contain_text("tokens")

    # The question's markup is shown as the characters it is, and never ran.
    expect(page.locator("#round-1 .question")).to_have_text(XSS_QUESTION)
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, main script, main iframe").count() == 0
    tab.shot("completed")

    page.goto("/console/sessions")
    row = page.locator("#session-rows tr").first
    expect(row).to_contain_text('<img src=x onerror="window.__xss=1">')
    expect(row.locator(".status")).to_have_text("completed")
    tab.shot("list")
    assert tab.problems == []


def test_the_session_list_filters_by_status_and_text(tab, app):
    store = app.extensions["llm_council"].store
    store.create_session(records.new_session("Tides and the moon", MEMBER_IDS, CHAIRMAN))
    store.create_session(_failed_session("Why do cats purr?"))
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    expect(page.locator("#session-rows tr")).to_have_count(2)
    page.select_option("select[name=status]", "failed")
    page.click("#filters button")
    expect(page.locator("#session-rows tr")).to_have_count(1)
    expect(page.locator("#session-rows")).to_contain_text("cats purr")
    page.select_option("select[name=status]", "")
    page.fill("input[name=q]", "tides")
    page.click("#filters button")
    expect(page.locator("#session-rows tr")).to_have_count(1)
    expect(page.locator("#session-rows")).to_contain_text("Tides and the moon")
    assert "q=tides" in page.url  # a reload keeps the filters
    assert tab.problems == []


def test_model_markdown_renders_its_safe_subset_and_never_markup(tab):
    tab.page.goto("/console/login")
    rendered = tab.page.evaluate(RENDER_MARKDOWN, [
        "One *em*, **strong**, `x < y` and snake_case_name.\n\n- first\n- second\n\n"
        "1. one\n2. two\n\n```\n<b>kept</b>\n```",
        *XSS_PAYLOADS,
    ])
    features, *attacks = rendered
    assert features["tags"] == ["P", "EM", "STRONG", "CODE", "UL", "LI", "LI", "OL", "LI", "LI",
                                "PRE", "CODE"]
    assert "snake_case_name" in features["text"] and "<b>kept</b>" in features["text"]
    for payload, result in zip(XSS_PAYLOADS, attacks, strict=True):
        assert set(result["tags"]) <= ALLOWED_MARKDOWN_TAGS, payload
        assert result["attributes"] == 0, payload
        assert "<" in result["text"], payload  # the markup is there, as text
    assert tab.page.evaluate("window.__xss") is None
    assert tab.problems == []


def test_the_fleet_page_shows_the_fleet_and_resets_a_breaker(tab, app, worker):
    worker("console-w")
    app.extensions["llm_council"].store.create_session(_failed_session("A lost round"))
    with app.app_context():
        fleet_breakers().for_model(MEMBER_IDS[0]).breaker.open()
    page = tab.page
    tab.sign_in(ADMIN_KEY)
    page.goto("/console/fleet")
    expect(page.locator("#workers")).to_contain_text("console-w@")
    expect(page.locator("#queues tr svg.sparkline").first).to_be_visible()
    breakers = page.locator("#breakers tr")
    expect(breakers).to_have_count(len(MEMBER_IDS) + 1)  # the members and the chairman
    opened = page.locator(f'#breakers tr[data-model="{MEMBER_IDS[0]}"]')
    expect(opened.locator(".status")).to_have_text("open")
    expect(page.locator("#failures")).to_contain_text("A lost round")
    tab.shot("fleet")

    opened.locator("button.reset").click()
    expect(opened.locator(".status")).to_have_text("closed")
    with app.app_context():
        assert fleet_breakers().for_model(MEMBER_IDS[0]).state == "closed"
    assert tab.problems == []


def test_the_fleet_page_tells_a_client_key_it_needs_an_admin_key(tab, app):
    client_key = issue_key(app.extensions["llm_council"].store, "someone", "client")[1]
    tab.sign_in(client_key)
    tab.page.goto("/console/fleet")
    expect(tab.page.locator("#notice")).to_have_text("The fleet view needs an admin key.")


def test_a_wrong_key_is_refused_at_the_login_page(tab):
    tab.page.goto("/console/login")
    tab.page.fill("#api-key", "llmc_not_a_key")
    tab.page.click("#login-form button")
    expect(tab.page.locator("#notice")).to_have_text("That key is not valid.")
    assert tab.page.evaluate("sessionStorage.length") == 0


def test_console_pages_are_data_free_shells_under_a_strict_policy(api_url, app):
    session = records.new_session("A private question", MEMBER_IDS, CHAIRMAN)
    app.extensions["llm_council"].store.create_session(session)
    for path in ("/console/login", "/console/sessions", f"/console/sessions/{session['id']}",
                 "/console/new", "/console/fleet"):
        response = httpx.get(api_url + path)
        assert response.status_code == 200, path
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "A private question" not in response.text
        scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", response.text, re.S)
        assert scripts and all(not body.strip() for body in scripts), path  # none inline
        assert "http://" not in response.text and "https://" not in response.text  # no CDN
    assert httpx.get(f"{api_url}/v1/sessions/{session['id']}").status_code == 401


def _failed_session(question: str) -> dict:
    session = records.new_session(question, MEMBER_IDS, CHAIRMAN)
    session["status"] = session["rounds"][0]["status"] = records.FAILED
    session["rounds"][0]["error"] = "every member failed"
    return session


XSS_PAYLOADS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "**<b onmouseover=window.__xss=1>bold</b>**",
    "[click](javascript:window.__xss=1) <a href=javascript:window.__xss=1>x</a>",
    "```\n<svg onload=window.__xss=1></svg>\n```",
    "`<iframe src=javascript:window.__xss=1></iframe>`",
    "- <details open ontoggle=window.__xss=1>\n- _<style>*{}</style>_",
    "# <math><mi xlink:href=javascript:window.__xss=1>x</mi></math>",
]

RENDER_MARKDOWN = """async (texts) => {
  const { renderMarkdown } = await import("/console/static/markdown.js");
  return texts.map((text) => {
    const box = document.createElement("div");
    document.body.append(box);
    box.append(renderMarkdown(text));
    const elements = Array.from(box.querySelectorAll("*"));
    return { tags: elements.map((e) => e.tagName),
             attributes: elements.reduce((n, e) => n + e.attributes.length, 0),
             text: box.textContent };
  });
}"""
