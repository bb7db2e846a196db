"""The built book works in a browser: every chapter page, opened in headless Chromium from a loopback
server, loads nothing from the internet, logs no JavaScript error, plays its videos, renders its
widgets from the saved widget state, typesets its math, shows its images; a full-page screenshot of
each lands in the build folder (printed at the end of the pytest run).

The book is built once per session by the `book_build` fixture (conftest.py), which also executes
the chapters for tests/test_notebooks.py. Chromium is Debian's (/usr/bin/chromium, installed by
.ci/run), driven by Playwright's Python package; Playwright never downloads a browser here.
Set WMLIB_SKIP_BROWSER=1 to skip the Chromium checks locally (never in CI).
"""
import functools
import json
import http.server
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml

from .conftest import CHAPTERS, ROOT, docname, local_skip, toc_docnames

CHROMIUM = os.environ.get("WMLIB_CHROMIUM", "/usr/bin/chromium")
# Debian's Chromium flags for a closed network, no GPU and root (the machine's notes): without the
# background-networking ones it keeps trying to reach Google's hosts.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
                 # Only the loopback server exists for the pages: any other host fails at once (and
                 # the test reports the request), whatever the network around the machine.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
PAGE_LOAD_TIMEOUT_MS = 180_000  # pages carry megabytes of inline images and video; generous for busy machines
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# Console messages that are not errors of the book. Each entry: (substring, why it is harmless).
# Empty on purpose: add one only with its reason.
BENIGN_CONSOLE = []


def test_toc_lists_every_chapter():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = toc_docnames(toc)
    assert listed == [docname(c) for c in CHAPTERS], (
        f"_toc.yml must list every chapter in book/, in numeric order, and nothing else:\n"
        f"  _toc.yml: {listed}\n  book/:    {[docname(c) for c in CHAPTERS]}")


@pytest.mark.slow
def test_book_builds(book_build):
    assert book_build.returncode == 0, f"the book build failed (exit code {book_build.returncode}):\n{book_build.tail(80)}"
    chapter_paths = {str(c) for c in CHAPTERS}
    # Warnings about a chapter fail that chapter's test_notebook_runs; any other is the book's.
    other = [line for line in book_build.log.splitlines()
             if "WARNING:" in line and not any(p in line for p in chapter_paths)]
    assert not other, "the book build warns:\n" + "\n".join(other)
    for chapter in book_build.chapters:
        assert book_build.page(chapter).exists(), f"no page for {chapter.name}"
    # A reader who reruns a chapter would pile these up (the test has ended them).
    assert not book_build.leftovers, ("processes that the chapters started were still running after the "
                                      "build (close every environment, e.g. env.close()):\n" +
                                      "\n".join(book_build.leftovers))


# ---------------------------------------------------------------------------------------------
# Chromium


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        # Chromium asks every site for /favicon.ico; the book has none, which is no error of a page.
        if self.path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture(scope="session")
def site(book_build):
    """The built HTML on a loopback HTTP server: its base URL."""
    if book_build.returncode != 0 or not book_build.html.exists():
        pytest.fail(f"the book build failed, nothing to open:\n{book_build.tail(40)}")
    handler = functools.partial(_QuietHandler, directory=str(book_build.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(book_build):
    if local_skip("WMLIB_SKIP_BROWSER"):
        pytest.skip("WMLIB_SKIP_BROWSER=1: the pages are not checked in Chromium")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium; .ci/run does) "
                    "or point WMLIB_CHROMIUM at one")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail('Playwright is not installed: pip install -e ".[test]" (it is in the test extras; '
                    "never run `playwright install`, the tests use the system Chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def screenshots(book_build):
    folder = book_build.out / "screenshots"
    folder.mkdir(exist_ok=True)
    book_build.screenshots = folder
    return folder


# Runs in the page: one verdict per widget view. The html-manager leaves each view's
# <script type=WIDGET_VIEW> in place and renders the widget into a div.widget-subarea inserted just
# before it.
_WIDGETS_JS = """() => Array.from(document.querySelectorAll('script[type="%s"]')).map((tag) => {
    const area = tag.previousElementSibling;
    const ok = !!area && area.classList.contains('widget-subarea') &&
        !!area.querySelector('.jupyter-widgets, [class*="widget-"]') && area.getBoundingClientRect().height > 0;
    let model = '?';
    try { model = JSON.parse(tag.textContent).model_id; } catch (e) {}
    return {model: model, ok: ok};
})""" % WIDGET_VIEW

_MATH_JS = """async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
    const math = Array.from(document.querySelectorAll('.math'));
    return {
        total: math.length,
        typeset: math.filter((m) => m.querySelector('mjx-container')).length,
        errors: Array.from(document.querySelectorAll('mjx-merror')).map((e) => e.getAttribute('data-mjx-error') || e.textContent),
    };
}"""

_VIDEO_JS = """async (timeoutMs) => {
    const videos = Array.from(document.querySelectorAll('video'));
    const results = [];
    for (const [i, v] of videos.entries()) {
        v.scrollIntoView();
        v.muted = true;
        let playError = null;
        try { await v.play(); } catch (e) { playError = String(e); }
        const t0 = performance.now();
        while (performance.now() - t0 < timeoutMs &&
               !(v.readyState >= 2 && v.duration > 0 && v.currentTime > 0) && !v.error) {
            await new Promise((r) => setTimeout(r, 100));
        }
        results.push({index: i, readyState: v.readyState, duration: v.duration, currentTime: v.currentTime,
                      error: v.error ? v.error.code + ' ' + v.error.message : playError});
    }
    return results;
}"""

_IMAGES_JS = """async () => {
    // Visit the whole page so that lazily loaded images load, then wait for every image to settle.
    for (let y = 0; y < document.body.scrollHeight; y += window.innerHeight) {
        window.scrollTo(0, y); await new Promise((r) => setTimeout(r, 20));
    }
    window.scrollTo(0, 0);
    const imgs = Array.from(document.images);
    await Promise.all(imgs.map((im) => im.complete ? null : new Promise((r) => { im.onload = im.onerror = r; })));
    return imgs.filter((im) => !(im.naturalWidth > 0)).map((im) => im.currentSrc || im.src).map((s) => s.slice(0, 120));
}"""

# book/_ext/static/book.css: glued values read as plain text, and what cells print is never cut at the edge
_LAYOUT_JS = """() => ({
    bold_glue: Array.from(document.querySelectorAll('span.pasted-text'))
        .filter((s) => parseInt(getComputedStyle(s).fontWeight) >= 600 && !s.closest('strong, b, th'))
        .map((s) => s.textContent.slice(0, 60)),
    cut_outputs: Array.from(document.querySelectorAll('div.cell_output pre'))
        .filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => p.textContent.slice(0, 60)),
})"""


def check_page(browser, url: str, screenshot: Path) -> list:
    """Open `url`, run every check, save a full-page screenshot; return the problems found."""
    problems = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    origin = "/".join(url.split("/", 3)[:3])
    page = context.new_page()
    page.set_default_timeout(PAGE_LOAD_TIMEOUT_MS)
    # The built book must depend on nothing but its own files (watched, not intercepted: routing
    # every request through Playwright slows big pages down a lot).
    page.on("request", lambda req: req.url.startswith((origin, "data:", "blob:")) or problems.append(
        f"requests a remote URL: {req.url[:200]}"))
    page.on("pageerror", lambda exc: problems.append(f"JavaScript error: {exc}"))

    def on_console(msg):
        if msg.type != "error":
            return
        text = msg.text
        if any(s in text for s, _why in BENIGN_CONSOLE):
            return
        where = msg.location.get("url", "") if isinstance(msg.location, dict) else ""
        problems.append(f"console error: {text} ({where})")
    page.on("console", on_console)
    page.on("response", lambda resp: resp.status >= 400 and problems.append(f"HTTP {resp.status} for {resp.url}"))
    page.on("requestfailed", lambda req: req.url.startswith(origin) and problems.append(
        f"request failed: {req.url} ({req.failure})"))
    try:
        page.goto(url, wait_until="load", timeout=PAGE_LOAD_TIMEOUT_MS)
        html = page.content()

        views = page.evaluate(_WIDGETS_JS)
        if views:
            if WIDGET_STATE not in html:
                problems.append(f"{len(views)} widget views but no saved widget state ({WIDGET_STATE})")
            try:
                page.wait_for_function(f"() => ({_WIDGETS_JS})().every((v) => v.ok)", timeout=60_000)
            except Exception:
                pass
            views = page.evaluate(_WIDGETS_JS)
            bad = [v["model"] for v in views if not v["ok"]]
            if bad:
                problems.append(f"{len(bad)} of {len(views)} widget views did not render (models {bad})")

        math = page.evaluate(_MATH_JS)
        if math["typeset"] < math["total"]:
            problems.append(f"MathJax typeset {math['typeset']} of {math['total']} math elements")
        if math["errors"]:
            problems.append(f"TeX errors: {math['errors']}")

        for v in page.evaluate(_VIDEO_JS, 30_000):
            if v["error"] or not (v["readyState"] >= 2 and v["duration"] > 0 and v["currentTime"] > 0):
                problems.append(f"video {v['index']} does not play: {v}")

        broken = page.evaluate(_IMAGES_JS)
        if broken:
            problems.append(f"{len(broken)} images did not load: {broken}")

        layout = page.evaluate(_LAYOUT_JS)
        if layout["bold_glue"]:
            problems.append(f"glued text in bold (book.css not applied?): {layout['bold_glue'][:3]}")
        if layout["cut_outputs"]:
            problems.append(f"{len(layout['cut_outputs'])} cell outputs cut at the right edge: {layout['cut_outputs'][:3]}")

        page.wait_for_timeout(500)  # late errors from the scripts above
        page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.name for p in CHAPTERS])
def test_chapter_page_in_chromium(chapter, book_build, site, browser, screenshots):
    if book_build.execution_error(chapter):
        pytest.fail(f"{chapter.name} does not run on smoke: see test_notebook_runs[{chapter.name}]", pytrace=False)
    page = book_build.page(chapter)
    assert page.exists(), f"{chapter.name} has no page in the build"
    url = f"{site}/{page.relative_to(book_build.html).as_posix()}"
    start = time.perf_counter()
    problems = check_page(browser, url, screenshots / f"{chapter.stem}.png")
    book_build.page_seconds[chapter] = time.perf_counter() - start
    if problems:
        pytest.fail(f"{chapter.name} in Chromium ({url}):\n  " + "\n  ".join(problems), pytrace=False)


# ---------------------------------------------------------------------------------------------
# The widgets that run V and M in the page (wmlib/book/browser.py): they must work without a kernel.

WIDGET_PAGES = {"03_v_carracing": "latent", "05_m_carracing": "dream", "08_doom_dream": "dream"}
MODEL_BUDGET = 15_000_000  # bytes of models one page downloads

# In the page: change the slider, then time until the canvas shows something else (ms).
_MOVE_SLIDER_JS = """async ([id, value]) => {
    const root = document.getElementById(id), slider = root.querySelector('input[type=range]');
    const canvas = root.querySelector('canvas'), before = canvas.toDataURL(), renders = +(root.dataset.renders || 0);
    const t = performance.now();
    slider.value = value;
    slider.dispatchEvent(new Event('input', {bubbles: true}));
    while (+(root.dataset.renders || 0) === renders || canvas.toDataURL() === before) {
        if (performance.now() - t > 10000) return {ms: null, error: root.dataset.error || null};
        await new Promise((r) => setTimeout(r, 5));
    }
    return {ms: performance.now() - t, shown: JSON.parse(root.dataset.shown)};
}"""


def _open_widget_page(browser, url, also=()):
    """Open `url`; returns the context, the page, the problems seen and the URLs it requested (of its own
    origin, or of the origins in `also`)."""
    problems = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    origin = "/".join(url.split("/", 3)[:3]) if url.startswith("http") else "file://"
    requested = []
    page.on("request", lambda req: requested.append(req.url) if req.url.startswith((origin, "data:", "blob:", *also))
            else problems.append(f"requests a remote URL: {req.url[:200]}"))
    page.on("pageerror", lambda exc: problems.append(f"JavaScript error: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console error: {msg.text[:300]}"))
    page.goto(url, wait_until="load", timeout=PAGE_LOAD_TIMEOUT_MS)
    return context, page, problems, requested


def _models_bytes(book_build, requested):
    return sum((book_build.html / "_static" / "wm" / "models" / u.rsplit("/", 1)[1]).stat().st_size
               for u in requested if "/_static/wm/models/" in u)


def _check_dream(page, root, controller_check):
    """Start the dream, read its frame rate from its own counter, steer with a key; return the measurements."""
    root.scroll_into_view_if_needed()
    root.locator("button.wm-go").click()
    page.wait_for_function("(el) => +el.dataset.frames > 10 || el.dataset.error", arg=root.element_handle(),
                           timeout=120_000)
    assert not root.get_attribute("data-error"), root.get_attribute("data-error")
    page.wait_for_timeout(2000)  # WebAssembly's first seconds run slower, until the browser optimises it
    frames0, t0 = int(root.get_attribute("data-frames")), time.perf_counter()
    page.wait_for_timeout(3000)
    fps = (int(root.get_attribute("data-frames")) - frames0) / (time.perf_counter() - t0)
    assert root.get_attribute("data-driver") == "C"
    controller_check(page.evaluate("(id) => WM.widgets[id].state()", root.get_attribute("id")),
                     lambda s: page.evaluate("([id, s]) => WM.widgets[id].controllerAction(s.z, s.h, s.c)",
                                             [root.get_attribute("id"), s]))
    root.focus()
    page.keyboard.down("ArrowLeft")
    page.wait_for_timeout(300)
    steered = json.loads(root.get_attribute("data-action"))
    driver = root.get_attribute("data-driver")
    page.keyboard.up("ArrowLeft")
    root.locator("input[type=range]").fill("0.5")  # tau, on the running dream
    tau = root.get_attribute("data-tau")
    frames1 = int(root.get_attribute("data-frames"))
    page.wait_for_timeout(500)
    return {"fps": fps, "steered": steered, "driver": driver, "tau": tau,
            "still_running": int(root.get_attribute("data-frames")) > frames1}


def _controller_check(weights, env):
    """Compare the page's C with wmlib's on the page's own state."""
    import torch
    from wmlib import Controller, ControllerConfig, load_model
    from wmlib.controller import controller_input

    ctrl, _ = load_model(Controller, ControllerConfig, weights, "controller", env)

    def check(state, page_action):
        z, h, c = (torch.tensor([state[k]], dtype=torch.float32) for k in ("z", "h", "c"))
        with torch.no_grad():
            want = ctrl(controller_input(ctrl.config.kind, z, h, c))[0].numpy()
        got = page_action(state)
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-3, (got, want.tolist())
    return check


def _built_chapter(book_build, name):
    """The chapter `name` (a stem) of the build; fails the test when it did not execute."""
    chapter = next(c for c in CHAPTERS if c.stem == name)
    if book_build.execution_error(chapter):
        pytest.fail(f"{chapter.name} does not run on smoke: see test_notebook_runs[{chapter.name}]", pytrace=False)
    return chapter


def _only(page, selector, name):
    found = page.locator(selector)
    assert found.count() == 1, f"{name}: {found.count()} of {selector}, expected 1"
    return found.first


def _page_url(book_build, site, name):
    return f"{site}/{book_build.page(_built_chapter(book_build, name)).relative_to(book_build.html).as_posix()}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WIDGET_PAGES))
def test_browser_widget_runs_without_a_kernel(name, book_build, site, browser):
    """Issue "the book alive without a kernel": the page's widget runs V (and M) in Chromium, offline."""
    from wmlib.book import shipped_weights

    context, page, problems, requested = _open_widget_page(browser, _page_url(book_build, site, name))
    try:
        root = _only(page, "div.wm-widget", name)
        assert not [u for u in requested if "/_static/wm/" in u and "/wm_widgets.js" not in u], \
            "the widget's models loaded before the reader touched it"
        if WIDGET_PAGES[name] == "latent":
            root.hover()  # the first interaction loads the decoder
            page.wait_for_function("(el) => el.dataset.ready || el.dataset.error", arg=root.element_handle(),
                                   timeout=120_000)
            assert not root.get_attribute("data-error"), root.get_attribute("data-error")
            first = page.evaluate(_MOVE_SLIDER_JS, [root.get_attribute("id"), "3"])
            second = page.evaluate(_MOVE_SLIDER_JS, [root.get_attribute("id"), "-2.5"])
            for moved, value in ((first, 3.0), (second, -2.5)):
                assert moved["ms"] is not None and moved["ms"] < 500, f"the canvas did not change within 0.5 s: {moved}"
                assert value in moved["shown"], moved
        else:
            env = "doom" if name.startswith("08") else "carracing"
            got = _check_dream(page, root, _controller_check(shipped_weights(env), env))
            assert got["fps"] >= 30, f"the dream ran at {got['fps']:.1f} frames/s (< 30)"
            assert got["driver"] == "you" and got["steered"][0] == -1, f"the left key did not steer: {got}"
            assert got["tau"] == "0.5" and got["still_running"], got
        page.wait_for_timeout(300)
        assert _models_bytes(book_build, requested) <= MODEL_BUDGET
        assert not problems, "\n".join(problems)
    finally:
        context.close()


@pytest.mark.slow
def test_browser_widget_runs_from_disk(book_build, browser):
    """The dream also runs in a page opened as a file (no server at all): every file arrives as a script."""
    chapter = _built_chapter(book_build, "08_doom_dream")
    context, page, problems, _ = _open_widget_page(browser, book_build.page(chapter).as_uri())
    try:
        root = page.locator("div.wm-widget").first
        root.scroll_into_view_if_needed()
        root.locator("button.wm-go").click()
        page.wait_for_function("(el) => +el.dataset.frames > 10 || el.dataset.error", arg=root.element_handle(),
                               timeout=120_000)
        assert not root.get_attribute("data-error"), root.get_attribute("data-error")
        assert not problems, "\n".join(problems)
    finally:
        context.close()


@pytest.mark.slow
def test_browser_widget_runs_in_a_kernel_output(book_build, browser, tmp_path, monkeypatch):
    """In Jupyter the same widget comes inline in a cell's output and the kernel serves its files: here this
    process is the kernel, and the output is opened as Jupyter would show it."""
    from wmlib.book import browser as widgets, shipped_weights

    assert (ROOT / "_vendor" / "ort").is_dir(), "the book build fetches onnxruntime-web into _vendor/ort"
    monkeypatch.delenv(widgets.BOOK_ASSETS, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    weights = shipped_weights("doom")
    out = tmp_path / "output.html"
    html = widgets.dream_widget("doom", weights=weights, starts=2)._repr_html_()
    port = json.loads(re.search(r"WM\.mount\([^,]+, (\{.*\})\);", html).group(1))["port"]
    out.write_text(f'<!doctype html><html><head><meta charset="utf-8"></head><body>{html}</body></html>')
    context, page, problems, requested = _open_widget_page(browser, out.as_uri(), also=(f"http://127.0.0.1:{port}/",))
    try:
        root = page.locator("div.wm-widget").first
        got = _check_dream(page, root, _controller_check(weights, "doom"))
        assert got["driver"] == "you" and got["steered"][0] == -1, got
        served = [u for u in requested if u.startswith(f"http://127.0.0.1:{port}/")]
        assert any(u.endswith("-m.onnx.js") for u in served), f"the kernel did not serve M: {served}"
        assert not problems, "\n".join(problems)
    finally:
        context.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["04_mixture_density_networks", "06_cma_es"])
def test_image_slider_switches_without_a_kernel(name, book_build, site, browser):
    """Chapter 4's tau and chapter 6's generations: pictures made at build time behind a plain-JavaScript slider."""
    context, page, problems, _ = _open_widget_page(browser, _page_url(book_build, site, name))
    try:
        root = _only(page, "div.wm-image-slider", name)
        before = root.locator("img").get_attribute("src")
        last = root.locator("input").get_attribute("max")
        root.locator("input").fill("0" if root.get_attribute("data-shown") != "0" else last)
        page.wait_for_timeout(100)
        assert root.locator("img").get_attribute("src") != before, "the picture did not change"
        assert not problems, "\n".join(problems)
    finally:
        context.close()
