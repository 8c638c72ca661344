"""What a person sees on a flow run's page of the Prefect UI, read in a real headless browser:
Debian's chromium, driven by Playwright (never `playwright install`: it downloads browsers).

Facts this relies on (prefect 3.9.1's UI):
- The page asks its own origin for /ui-settings; the `api_url` there (PREFECT_UI_API_URL) is where
  every API call goes. When that API does not answer, the UI shows "Can't connect to Server API".
- /runs/flow-run/<id> opens on the Logs tab: log lines render without a click. The list is
  virtual (only rows near the top are in the page), so expect lines logged early in a short run.
- A server with an auth string: the UI's /login page has a password field where a person pastes
  the whole auth string (user:password); the UI keeps it in its local storage and sends it. A
  flow run's page opened without it shows no run (the UI goes to its home page).
"""

import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

# Debian's chromium (scripts/ensure-packages.sh installs it); Google Chrome where that is what
# the machine has (GitHub's runners).
CHROMIUM = shutil.which("chromium") or shutil.which("google-chrome") or "/usr/bin/chromium"
# Headless, as root, with no GPU; QUIC, background, sync and component traffic only try to reach
# the internet, which tests must not; a container's /dev/shm is too small for chromium.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
API_ERROR = re.compile(r"Can't connect to Server API|Unable to connect to Prefect server")
STATE_BADGE = ".state-badge"


@dataclass
class FlowRunPage:
    url: str
    ui_api_url: str | None = None
    api_answers: bool = False  # the page itself reached <api_url>/health
    state: str | None = None  # the state badge's text
    logs_found: list[str] = field(default_factory=list)
    api_error_shown: bool = False
    error: str | None = None  # a timeout or a browser error
    screenshot: Path | None = None
    seconds: float = 0.0


def open_flow_run_page(
    ui_url: str,
    flow_run_id: str,
    expected_state: str,
    expected_logs: list[str],
    screenshot: Path,
    timeout: float = 60,
    auth_string: str | None = None,
) -> FlowRunPage:
    """Load the page in a fresh browser profile (logging in first, as a person would, when the
    server asks for ``auth_string``) and report what it shows; a failed expectation is in the
    report, never an exception."""
    page_report = FlowRunPage(url=f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}")
    started = time.monotonic()

    def left_ms() -> float:
        # Never 0: Playwright reads 0 as "wait forever".
        return max(1.0, (started + timeout - time.monotonic()) * 1000)

    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="prefect-aci-ui-") as profile:
        browser = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1400},  # tall: more log rows are rendered
        )
        page = browser.pages[0] if browser.pages else browser.new_page()
        state = page.get_by_text(expected_state, exact=True).filter(visible=True)
        banner = page.get_by_text(API_ERROR).filter(visible=True)
        try:
            if auth_string:
                log_in(page, ui_url, auth_string, left_ms())
            page.goto(page_report.url, wait_until="domcontentloaded", timeout=left_ms())
            settings = page.evaluate("() => fetch('/ui-settings').then(r => r.json())")
            page_report.ui_api_url = settings.get("api_url")
            # Whichever comes first: the state, or the UI saying it cannot reach its API.
            state.or_(banner).first.wait_for(timeout=left_ms())
            if state.count():
                for line in expected_logs:
                    with_line = page.get_by_text(line).filter(visible=True).first
                    with_line.wait_for(timeout=left_ms())
                    page_report.logs_found.append(line)
        except PlaywrightError as exc:
            page_report.error = f"{type(exc).__name__}: {exc.message.splitlines()[0]}"
        try:
            page_report.api_answers = bool(
                page_report.ui_api_url
                and page.evaluate(
                    "async u => { try { return (await fetch(u + '/health')).ok } "
                    "catch { return false } }",
                    page_report.ui_api_url,
                )
            )
            badge = page.locator(STATE_BADGE).filter(visible=True)
            page_report.state = badge.first.inner_text().strip() if badge.count() else None
            page_report.api_error_shown = banner.count() > 0
            page.screenshot(path=str(screenshot), full_page=True)
            page_report.screenshot = screenshot
        except PlaywrightError as exc:
            page_report.error = page_report.error or f"{type(exc).__name__}: {exc.message}"
        browser.close()
    page_report.seconds = round(time.monotonic() - started, 1)
    return page_report


def log_in(page, ui_url: str, auth_string: str, timeout_ms: float) -> None:
    """The UI's login page, as a person uses it: paste the auth string, press Enter, and wait to
    be sent on."""
    page.goto(f"{ui_url.rstrip('/')}/login", wait_until="domcontentloaded", timeout=timeout_ms)
    field = page.locator("input[type=password]").filter(visible=True).first
    field.wait_for(timeout=timeout_ms)
    field.fill(auth_string)
    field.press("Enter")
    page.wait_for_url(lambda address: "/login" not in address, timeout=timeout_ms)
