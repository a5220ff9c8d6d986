"""A real browser for tests: Debian's headless Chromium driven by Selenium through Debian's chromedriver.

    with chromium(artifacts) as browser:
        browser.get("http://127.0.0.1:8080/")
        browser.save_screenshot(str(artifacts / "page.png"))
        errors = console_errors(browser)

Nothing is downloaded: the browser is /usr/bin/chromium and the driver /usr/bin/chromedriver (apt-get install
chromium chromium-driver); Selenium Manager is never asked (SE_OFFLINE). Each browser has a fresh profile
and none of Chromium's background networking.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1800")


def unavailable_reason() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} not found (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -e '.[dev]')"
    return None


@contextlib.contextmanager
def chromium(work: Path | None = None) -> Iterator[object]:
    """A headless Chromium (a selenium WebDriver) with a fresh profile, closed after."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers on the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="inspectd-chromium-", dir=work))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[dict]:
    """The browser console's errors (and CSP violations, failed loads) since the last call."""
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
