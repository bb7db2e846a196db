"""Sphinx extension (jupyter-book `local_extensions`) for this book's HTML: every page works offline
and logs no JavaScript error. tests/test_book.py checks both in Chromium."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from sphinx.errors import ConfigError

# matplotlib's FuncAnimation.to_jshtml() links Font Awesome 4 from a CDN for the icons of its
# buttons. The theme's own Font Awesome (scripts/fontawesome.js) already draws those `fa` icons, so
# the link only costs a request to the internet: drop it.
_FA4_CDN_LINK = re.compile(r'<link\s+rel="stylesheet"\s+href="https://maxcdn\.bootstrapcdn\.com/font-awesome/[^"]*"\s*/?>')


def _clean_page(app, pagename, templatename, context, doctree):
    # Sphinx 7 lists an inline script that an extension adds after the builder started twice (its
    # filename is None once and '' once; fixed in Sphinx 8.2 by sphinx-doc/sphinx#13402, but
    # jupyter-book 1 needs Sphinx 7): sphinx-thebe's `const THEBE_JS_URL` twice is a SyntaxError
    # on every page. Keep the first of identical scripts.
    scripts = context.get("script_files")
    if scripts is not None:
        seen, unique = set(), []
        for js in scripts:
            key = (getattr(js, "filename", str(js)) or "",
                   tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                unique.append(js)
        scripts[:] = unique  # in place: Sphinx restores its own list after the page
    if isinstance(context.get("body"), str):
        context["body"] = _FA4_CDN_LINK.sub("", context["body"])


def _check_static_paths(app, config):
    # Without the JavaScript that book/build.sh fetches, the pages would show no math and no
    # widgets. A plain `jupyter-book build .` fetches it here (book/build.sh --fetch-only, npm);
    # where that fails, say so instead of building pages without it.
    def missing():
        return [p for p in [*config.html_static_path, "_vendor/ort"] if not (Path(app.confdir) / p).is_dir()]
    if missing():
        script = Path(__file__).resolve().parent.parent / "build.sh"
        done = subprocess.run(["bash", str(script), "--fetch-only"], capture_output=True, text=True)
        if done.returncode != 0 or missing():
            raise ConfigError(f"html_static_path {missing()} missing and `{script} --fetch-only` failed "
                              f"({(done.stderr or done.stdout).strip()[-500:]}): the pages' JavaScript "
                              "(MathJax, the widget html-manager) is fetched with npm, which must be installed")


def _widget_assets(app, config):
    # The chapters' browser widgets (wmlib/book/browser.py) write the models they need into this folder while
    # they execute (the kernels inherit the variable); _copy_widget_files puts them under _static/wm/.
    folder = Path(app.outdir).parent / "wm_assets"
    shutil.rmtree(folder, ignore_errors=True)  # every chapter is executed on every build: no stale models
    folder.mkdir(parents=True)
    os.environ["WMLIB_BOOK_ASSETS"] = str(folder)
    app.add_js_file("wm/wm_widgets.js")


def _copy_widget_files(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    from wmlib.book.browser import CODE, write_runtime
    dest = Path(app.outdir) / "_static" / "wm"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CODE, dest / "wm_widgets.js")
    write_runtime(dest, Path(app.confdir) / "_vendor" / "ort")
    models = Path(os.environ["WMLIB_BOOK_ASSETS"]) / "models"
    if models.is_dir():
        shutil.copytree(models, dest / "models", dirs_exist_ok=True)


def setup(app):
    # myst-nb executes the chapters in this process, through nbclient: see nbclient_poll.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from nbclient_poll import patch
    patch()
    app.connect("config-inited", _check_static_paths)
    app.connect("config-inited", _widget_assets)
    app.connect("build-finished", _copy_widget_files)
    # After the other extensions' html-page-context handlers, which add the page's own scripts.
    app.connect("html-page-context", _clean_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
