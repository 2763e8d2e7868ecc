"""Driving the console's pages: opening a view, waiting for what it shows, confirming
dialogs, screenshots."""
import json
import os
import time

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By

WAIT = 20.0


class Console:
    """The console of one broker in one browser."""

    def __init__(self, driver, broker, screens):
        self.d = driver
        self.broker = broker
        self.screens = screens

    def open(self, route):
        """Loads the page at `#/<route>` (a fresh page, so no state carries over)."""
        self.d.get("about:blank")
        self.d.get(f"{self.broker.http_url}/ui#/{route}")
        self.wait(lambda: self.d.execute_script("return document.readyState") == "complete", what="page load")

    def wait(self, check, timeout=WAIT, what="condition"):
        """Polls `check` until it returns something truthy; returns that."""
        deadline = time.time() + timeout
        last_err = None
        while time.time() < deadline:
            try:
                v = check()
                if v:
                    return v
            except (StaleElementReferenceException, WebDriverException, LookupError, ValueError) as e:
                last_err = e
            time.sleep(0.1)
        errors = self.texts(".error-box, [data-test=toast-error]")
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; page errors: {errors}; "
                             f"last exception: {last_err}\nbroker log:\n{self.broker.log_tail(20)}")

    def find(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def finds(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def texts(self, css):
        out = []
        for e in self.finds(css):
            try:
                out.append(e.text)
            except StaleElementReferenceException:
                pass
        return out

    def text(self, css):
        """The text of the first element matching `css`, or None."""
        t = self.texts(css)
        return t[0] if t else None

    def number(self, css):
        """The number shown by the first element matching `css` (thousands separators
        dropped), or None when absent or not a number."""
        t = self.text(css)
        if t is None:
            return None
        try:
            return int(t.replace(",", "").strip())
        except ValueError:
            return None

    def wait_number(self, css, want, timeout=WAIT):
        """Waits until the element shows the number `want` (or `want(n)` is true)."""
        ok = want if callable(want) else (lambda n: n == want)
        return self.wait(lambda: (lambda n: n is not None and ok(n) and (n,))(self.number(css)),
                         timeout, what=f"{css} to show {want}")[0]

    def fill(self, css, value):
        e = self.find(css)
        e.clear()
        e.send_keys(str(value))

    def click(self, css):
        self.wait(lambda: self.find(css).is_enabled(), what=f"{css} enabled")
        self.find(css).click()

    def confirm(self, word=None):
        """Answers the confirmation dialog: types `word` when asked, then confirms. Checks that
        the dialog refuses to go on before the word is typed."""
        self.wait(lambda: self.d.execute_script("return document.getElementById('confirm').open"),
                  what="the confirmation dialog")
        if word is not None:
            assert not self.find("#confirm-ok").is_enabled(), "confirm was possible before typing the name"
            self.find("#confirm-input").send_keys(word)
        self.click("#confirm-ok")
        self.wait(lambda: not self.d.execute_script("return document.getElementById('confirm').open"),
                  what="the dialog to close")

    def toast(self):
        """Waits for a success message; fails on an error message."""
        def seen():
            bad = self.texts("[data-test=toast-error]")
            if bad:
                raise AssertionError(f"the console reported an error: {bad}")
            return self.text("[data-test=toast]")
        return self.wait(seen, what="a success message")

    def api(self, path):
        """A JSON answer of the console API, fetched by the page itself."""
        raw = self.d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/api/v1' + arguments[0]).then(r => r.text()).then(done, e => done(String(e)));", path)
        return json.loads(raw)

    def shot(self, name, max_height=2400):
        """Saves a screenshot of the whole page (up to `max_height` pixels) as
        <screens>/<name>.png."""
        path = os.path.join(self.screens, name + ".png")
        size = self.d.get_window_size()
        page, chrome = self.d.execute_script(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
        tall = min(max(page, size["height"] - chrome), max_height) + chrome
        if tall != size["height"]:
            self.d.set_window_size(size["width"], tall)
            time.sleep(0.3)
        self.d.save_screenshot(path)
        if tall != size["height"]:
            self.d.set_window_size(size["width"], size["height"])
        return path

    def phone(self):
        """Resizes to a phone screen; returns a function that restores the laptop size."""
        self.d.set_window_size(390, 844)
        return lambda: self.d.set_window_size(1280, 900)

    def no_horizontal_scroll(self):
        return self.d.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1")
