"""Fixtures of the web console's browser tests: Debian's headless Chromium driven through its
chromedriver by Selenium, pointed at the session's broker; screenshots go to
target/console-screens/<store>/."""
import os
import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from brokerproc import ROOT

CHROMIUM = os.environ.get("BROKER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BROKER_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def screens(store_kind):
    """The directory screenshots are saved in (emptied once per session)."""
    d = os.path.join(ROOT, "target", "console-screens", store_kind)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


@pytest.fixture(scope="session")
def driver():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            raise RuntimeError(f"{path} is missing: scripts/setup-clients installs the Debian packages "
                               "chromium and chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1",
              "--disable-extensions", "--no-first-run", "--lang=en-US"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    yield d
    d.quit()
