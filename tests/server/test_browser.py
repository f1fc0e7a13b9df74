"""The web pages in a real browser: Debian's chromium driven by chromium-driver through
Selenium. Log in with a token (keyboard only), filter, sort, open a problem, open a dump,
download it; screenshots kept (in the test's tmp directory, and copied to
$KDUMPKIT_SCREENSHOTS when that is set)."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest
from server_support import Server

pytestmark = pytest.mark.slow

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
]


@pytest.fixture
def browser(tmp_path: Path):  # type: ignore[no-untyped-def]
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("chromium and chromium-driver are not installed (scripts/install-deps.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads  # type: ignore[attr-defined]
    yield driver
    driver.quit()


def shot(driver, tmp_path: Path, name: str) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path))
    keep = os.environ.get("KDUMPKIT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def test_browse_problems(make_server, browser, kdump61: Path, flat61: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    def until(condition):  # type: ignore[no-untyped-def]
        return WebDriverWait(driver, 30).until(condition)

    server: Server = make_server()
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(50_000))
    ids = [server.upload(kdump61, "web1")["id"], server.upload(flat61, "db2")["id"],
           server.upload(garbage, "web1")["id"]]  # fmt: skip
    server.wait(ids)
    driver = browser
    driver.get(server.url + "/")
    assert driver.current_url.endswith("/login")
    # keyboard only: the token field has the focus; Enter submits
    active = driver.switch_to.active_element
    assert active.get_attribute("id") == "token"
    active.send_keys("kdk_read_not-a-token", Keys.ENTER)
    alert = until(ec.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert "cannot read" in alert.text
    driver.find_element(By.ID, "token").send_keys(server.token("read"), Keys.ENTER)
    until(ec.url_to_be(server.url + "/"))
    rows = driver.find_elements(By.CSS_SELECTOR, "a.problem-link")
    assert [r.text for r in rows] == ["sysrq_handle_crash | __handle_sysrq | write_sysrq_trigger"]
    assert driver.find_element(By.CSS_SELECTOR, "td.count").text == "2"
    shot(driver, tmp_path, "problems")
    # filter by host: one of the two dumps
    Select(driver.find_element(By.ID, "f-host")).select_by_visible_text("db2")
    driver.find_element(By.ID, "apply").click()
    until(ec.url_contains("host=db2"))
    assert driver.find_element(By.CSS_SELECTOR, "td.count").text == "1"
    # a date range with no dump: nothing
    driver.get(server.url + "/?until=2020-01-01")
    assert "No problems match" in driver.find_element(By.TAG_NAME, "tbody").text
    driver.get(server.url + "/")
    driver.find_element(By.ID, "sort-last-seen").click()
    until(ec.url_contains("sort=last_seen"))
    driver.find_element(By.CSS_SELECTOR, "a.problem-link").click()
    until(ec.url_contains("/problems/"))
    assert "2 dumps from 2 hosts" in driver.find_element(By.TAG_NAME, "main").text
    assert driver.find_elements(By.CSS_SELECTOR, "svg rect")
    shot(driver, tmp_path, "problem")
    driver.find_element(By.CSS_SELECTOR, "a.dump-link").click()
    report = until(ec.presence_of_element_located((By.ID, "report")))
    assert "sysrq_handle_crash" in report.text
    shot(driver, tmp_path, "dump")
    name = driver.find_element(By.ID, "download").text
    driver.find_element(By.ID, "download").click()
    target = driver.downloads / name
    deadline = time.monotonic() + 60
    while not target.exists():
        assert time.monotonic() < deadline, list(driver.downloads.iterdir())
        time.sleep(0.2)
    time.sleep(0.5)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest in {server.get(f"/api/dumps/{i}")["sha256"] for i in ids}
    driver.get(server.url + "/dumps")
    assert "not a crash dump" in driver.find_element(By.TAG_NAME, "main").text
    driver.get(server.url + "/hosts")
    assert {"web1", "db2"} <= {a.text for a in driver.find_elements(By.CSS_SELECTOR, "td a")}
    shot(driver, tmp_path, "hosts")
