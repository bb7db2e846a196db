#!/usr/bin/env bash
# Build the book: book/build.sh [jupyter-book build options, e.g. --path-output DIR]
#                 book/build.sh --fetch-only   (only fetch the pages' JavaScript into _vendor/)
#
# Every chapter is executed on the profile in WMLIB_PROFILE (smoke, default or paper; unset means
# default), and the HTML lands in _build/html (or DIR/_build/html).
#
# The built pages must work without the internet, so the JavaScript that myst-nb and Sphinx would
# otherwise load from a CDN (require.js and the widget html-manager, which render the saved widget
# state, and MathJax) is fetched once with npm into _vendor/ (git-ignored) and served from
# _build/html/_static/ (_config.yml points html_static_path, nb_ipywidgets_js and mathjax_path at it),
# and so is onnxruntime-web, which runs V and M in the pages' widgets (_static/wm/, book/_ext/book_offline.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# Bump a version here and the next build fetches it again.
PACKAGES=(requirejs@2.3.8 @jupyter-widgets/html-manager@1.0.15 mathjax@3.2.2 onnxruntime-web@1.31.1)
VENDOR=_vendor

fetch_js() {
    command -v npm >/dev/null || { echo "book/build.sh: npm is needed once to fetch ${PACKAGES[*]} into $VENDOR/" >&2; exit 1; }
    echo "book/build.sh: fetching ${PACKAGES[*]} into $VENDOR/"
    local tmp
    tmp=$(mktemp -d)
    # `npm pack` fetches just each package's tarball (npm checks its integrity), without the
    # dependencies that `npm install` would add: the files we serve are self-contained bundles.
    (cd "$tmp" && npm pack --silent "${PACKAGES[@]}" >/dev/null)
    for tgz in "$tmp"/*.tgz; do
        mkdir -p "${tgz%.tgz}" && tar xzf "$tgz" -C "${tgz%.tgz}" --strip-components=1
    done
    local static="$VENDOR/static.new.$$"  # then one rename: a build never sees a half-written folder
    rm -rf "$static" && mkdir -p "$static/require" "$static/html-manager" "$static/mathjax"
    cp "$tmp"/requirejs-*/require.js "$static/require/"
    # embed-amd.js renders the widgets; it finds its icon fonts next to itself.
    cp "$tmp"/jupyter-widgets-html-manager-*/dist/embed-amd.js \
       "$tmp"/jupyter-widgets-html-manager-*/dist/*.{woff,woff2,ttf,eot,svg} "$static/html-manager/"
    # MathJax's combined TeX+CHTML file, plus the components and fonts it loads relative to itself.
    local mj
    mj=$(echo "$tmp"/mathjax-*/es5)
    cp -r "$mj"/tex-mml-chtml.js "$mj"/{a11y,adaptors,input,output,sre,ui} "$static/mathjax/"
    cp "$tmp"/mathjax-*/LICENSE "$static/mathjax/"
    # onnxruntime-web for the widgets that run V and M in the page (wmlib/book/browser.py): the WebAssembly
    # build without threads' worker, its loader and binary; book_offline.py wraps them into _static/wm/.
    local ort="$VENDOR/ort.new.$$"
    rm -rf "$ort" && mkdir -p "$ort"
    cp "$tmp"/onnxruntime-web-*/dist/{ort.wasm.min.js,ort-wasm-simd-threaded.mjs,ort-wasm-simd-threaded.wasm} \
       "$ort/"
    rm -rf "$tmp" "$VENDOR/static" "$VENDOR/ort"
    mv -T "$static" "$VENDOR/static"
    mv -T "$ort" "$VENDOR/ort"
    printf '%s\n' "${PACKAGES[@]}" > "$VENDOR/VERSIONS"
}

if [ "$(cat "$VENDOR/VERSIONS" 2>/dev/null)" != "$(printf '%s\n' "${PACKAGES[@]}")" ]; then
    fetch_js
fi
# book/_ext/book_offline.py calls this when a plain `jupyter-book build .` finds no _vendor/.
[ "${1:-}" = "--fetch-only" ] && exit 0

export WMLIB_PROFILE="${WMLIB_PROFILE:-default}"
echo "book/build.sh: building with WMLIB_PROFILE=$WMLIB_PROFILE"
exec jupyter-book build . "$@"
