"""Widgets that run V and M in the reader's browser, with onnxruntime-web: no kernel needed to move them.

    latent_explorer("carracing", frames)   # chapter 3: move one dimension of z, V's decoder draws it
    dream_widget("carracing")               # chapter 5: M dreams and V draws, tau acts on the running dream
    dream_widget("doom")                    # chapter 8: play in the Doom dream; C drives until you take over

A widget is an HTML output (a div and a script) whose code is wmlib/book/static/wm_widgets.js. The same output
works in three places, and only where its files come from differs:
- the built book: book/_ext/book_offline.py puts the code, the runtime and the models under _static/wm/;
  a page downloads them when the reader first touches a widget;
- Jupyter and Colab: the output carries the code, and the kernel serves the runtime and the models from a
  loopback HTTP server (on Colab through the notebook's proxy, google.colab.kernel.proxyPort).
The models are exported from the shipped weights (onnx_export), their float32 weights stored as float16 (the
shipped weights are float16 already, so the frames are those torch draws), and every binary file is wrapped
in a classic script (WM_ASSET(name, base64)), which loads from a web server, a proxy and a page opened from
disk alike. onnxruntime-web is fetched with npm by book/build.sh into _vendor/ort, like the book's other
JavaScript: no CDN at read time.

Introduced in chapter 3.
"""
import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import file_digest, load_model, write_text
from ..controller import Controller, ControllerConfig
from ..dream import load_initial_z
from ..errors import WMError
from ..mdnrnn import MDNRNN, MDNRNNConfig
from ..vae import ConvVAE, VAEConfig, tensor_to_frames
from .figures import png
from .onnx_export import export_decoder, export_m_step, half_weights
from .notebook import repo_root, shipped_weights

CODE = Path(__file__).resolve().parent / "static" / "wm_widgets.js"
RUNTIME = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WRAPPED = RUNTIME[1:]  # binary (or module) files: served as WM_ASSET scripts
BOOK_ASSETS = "WMLIB_BOOK_ASSETS"  # set by the book build: models go there, the pages load them from _static/wm
PAGE_BUDGET = 15_000_000  # bytes of models one page may download


# ---- files ------------------------------------------------------------------------------------------------

def asset_script(name: str, data: bytes) -> str:
    """`data` as a classic script that hands it to the page: WM_ASSET(name, base64)."""
    return f"WM_ASSET({json.dumps(name)},\"{base64.b64encode(data).decode('ascii')}\");\n"


def vendor_runtime() -> Path:
    """The folder of onnxruntime-web's files that book/build.sh fetched with npm (_vendor/ort), fetching them
    when it is missing."""
    places = [repo_root(), Path(__file__).resolve().parents[2]]
    for root in dict.fromkeys(places):
        if all((root / "_vendor" / "ort" / f).exists() for f in RUNTIME):
            return root / "_vendor" / "ort"
    for root in dict.fromkeys(places):
        script = root / "book" / "build.sh"
        if script.exists() and shutil.which("npm"):
            done = subprocess.run(["bash", str(script), "--fetch-only"], capture_output=True, text=True)
            if done.returncode == 0 and all((root / "_vendor" / "ort" / f).exists() for f in RUNTIME):
                return root / "_vendor" / "ort"
            raise WMError(f"`{script} --fetch-only` could not fetch onnxruntime-web with npm: "
                          f"{(done.stderr or done.stdout).strip()[-400:]}")
    raise WMError("the browser widgets need onnxruntime-web in _vendor/ort: run `book/build.sh --fetch-only` in a "
                  "clone of the repository (it needs npm once)")


def write_runtime(folder: Path, source: Path | None = None) -> int:
    """onnxruntime-web's files into folder/ort (the WebAssembly and its loader wrapped as WM_ASSET scripts);
    returns the bytes a page downloads for them. Files already there are kept."""
    source = Path(source) if source else vendor_runtime()
    out = Path(folder) / "ort"
    total = 0
    for name in RUNTIME:
        dst = out / (name + ".js" if name in WRAPPED else name)
        if not dst.exists():
            data = (source / name).read_bytes()
            if name in WRAPPED:
                write_text(dst, asset_script("ort/" + name, data))
            else:
                out.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, dst)
        total += dst.stat().st_size
    return total


def write_models(folder: Path, env: str, weights: Path, parts=("decoder", "m")) -> dict:
    """V's decoder and M's step of `weights` as WM_ASSET scripts in folder/models, named by the weights'
    digest (a page of other weights never picks up stale ones). Returns {part: (name, bytes)}."""
    weights = Path(weights)
    out = {}
    for part in parts:
        src = weights / ("vae.safetensors" if part == "decoder" else "mdnrnn.safetensors")
        name = f"models/{env}-{file_digest(src)[:12]}-{part}.onnx"
        dst = Path(folder) / (name + ".js")
        if not dst.exists():
            with tempfile.TemporaryDirectory() as tmp:
                onnx = Path(tmp) / "model.onnx"
                if part == "decoder":
                    export_decoder(load_model(ConvVAE, VAEConfig, weights, "vae", env)[0].eval(), onnx)
                else:
                    export_m_step(load_model(MDNRNN, MDNRNNConfig, weights, "mdnrnn", env)[0].eval(), onnx)
                write_text(dst, asset_script(name, half_weights(onnx).read_bytes()))
        out[part] = (name, dst.stat().st_size)
    return out


# ---- where the files live, and who serves them -------------------------------------------------------------

def assets_dir() -> Path:
    """The book build's folder (WMLIB_BOOK_ASSETS), else a cache the kernel serves (~/.cache/wmlib/widgets)."""
    if os.environ.get(BOOK_ASSETS):
        return Path(os.environ[BOOK_ASSETS])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wmlib" / "widgets"


class _Files(http.server.SimpleHTTPRequestHandler):
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/ort/"):  # onnxruntime-web is prepared when a page first asks for it
            try:
                with self.lock:
                    write_runtime(Path(self.directory))
            except WMError as e:
                print(f"wmlib widgets: {e}", file=sys.stderr)
                self.send_error(500, str(e)[:200])
                return
        super().do_GET()

    def copyfile(self, source, outputfile):
        try:
            super().copyfile(source, outputfile)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page was closed or reloaded during a download: nothing to report

    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "max-age=3600")
        super().end_headers()


@functools.lru_cache(maxsize=None)
def serve(folder: str) -> int:
    """A loopback HTTP server of `folder` for this kernel's widgets, started once; returns its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Files, directory=folder))
    threading.Thread(target=server.serve_forever, daemon=True, name="wmlib-widget-files").start()
    return server.server_address[1]


class BrowserWidget:
    """One widget: `config` (what the page's code reads) shown as an HTML output. Chapter 3."""

    _count = 0

    def __init__(self, config: dict):
        self.config = config
        BrowserWidget._count += 1
        self.id = f"wm-{config['kind']}-{os.getpid()}-{BrowserWidget._count}"

    def __repr__(self) -> str:  # what a page without HTML shows
        what = "latent explorer" if self.config["kind"] == "latent" else "dream"
        return f"<{self.config['env']} {what}: runs V{'' if what.startswith('latent') else ' and M'} in the browser>"

    def _repr_html_(self) -> str:
        cfg = dict(self.config)
        code = ""
        if not os.environ.get(BOOK_ASSETS):  # Jupyter or Colab: the code comes with the output, the files from us
            cfg["port"] = serve(str(assets_dir()))
            code = CODE.read_text()
        data = json.dumps(cfg).replace("</", "<\\/")  # inside <script> only "</" needs care
        return (f'<div id="{self.id}" class="wm-widget"></div>\n<script>\n{code}\n'
                f'WM.mount({json.dumps(self.id)}, {data});\n</script>')


# ---- the widgets ------------------------------------------------------------------------------------------

def _weights(env: str, weights) -> Path:
    return Path(weights) if weights is not None else shipped_weights(env)


def _data_uri(frame: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png(frame, scale=1)).decode("ascii")


def _runtime_bytes() -> int:
    try:
        return sum((vendor_runtime() / f).stat().st_size * (4 / 3 if f in WRAPPED else 1) for f in RUNTIME)
    except WMError:
        return 0


def _check_budget(models: dict) -> int:
    total = sum(size for _, size in models.values())
    if total > PAGE_BUDGET:
        raise WMError(f"the widget's models weigh {total / 1e6:.1f} MB, over the page budget of "
                      f"{PAGE_BUDGET / 1e6:.0f} MB")
    return total


@torch.no_grad()
def latent_explorer(env: str, frames, *, weights=None, names=None, kl=None, value_range: float = 3.0) -> BrowserWidget:
    """Move any dimension of z of real frames (N, 64, 64, 3) uint8 and see V's decoder draw it at once, in the
    browser, beside the real frame. The dimensions are listed by how much V uses them: `kl` (z_size,), their
    mean KL over the frames a chapter measured it on, else over `frames`; largest first.

    Introduced in chapter 3.
    """
    weights = _weights(env, weights)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1:] != (64, 64, 3) or frames.dtype != np.uint8:
        raise WMError(f"latent_explorer needs frames of shape (N, 64, 64, 3) uint8, got {frames.shape} "
                      f"{frames.dtype}: pass frames as an episode file stores them")
    vae = load_model(ConvVAE, VAEConfig, weights, "vae", env)[0].eval()
    from ..vae import frames_to_tensor
    mu, logvar = vae.encode(frames_to_tensor(frames))
    kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).mean(0) if kl is None else torch.as_tensor(np.asarray(kl))
    if kl.shape != (vae.config.z_size,):
        raise WMError(f"kl must hold one value per dimension of z ({vae.config.z_size}), got shape {tuple(kl.shape)}")
    order = torch.argsort(kl, descending=True).tolist()
    drawn = tensor_to_frames(vae.decode(mu))
    names = names or [f"frame {i + 1}" for i in range(len(frames))]
    models = write_models(assets_dir(), env, weights, parts=("decoder",))
    return BrowserWidget({
        "kind": "latent", "env": env, "range": value_range, "decoder": models["decoder"][0],
        "bytes": _check_budget(models) + _runtime_bytes(),
        "samples": [{"name": n, "z": [round(float(v), 5) for v in m], "png": _data_uri(f), "real": _data_uri(x)}
                    for n, m, f, x in zip(names, mu, drawn, frames)],
        "dims": [{"index": i, "label": f"z[{i}] (KL {float(kl[i]):.2f} nats)"} for i in order]})


@torch.no_grad()
def dream_widget(env: str, *, weights=None, tau: float = 1.0, seed: int = 0, starts: int = 16, initial=None,
                 initial_state=None, max_steps: int = 2100) -> BrowserWidget:
    """M dreams and V draws, live in the browser: a tau slider that acts on the running dream, p(done) as it
    evolves (Doom), the shipped C driving until the reader presses the arrow keys or holds the buttons (the
    article's human takeover), "let C drive" to give it back. A Doom episode ends when p(done) > 0.5.

    Each episode starts from one of `starts` codes drawn from `initial` ((mu, logvar), each (N, z_size); z is
    sampled from them, or is mu where logvar is None), by default the recorded first frames the dream environment
    starts from (initial_z.npz), with M's memory empty, or `initial_state` ((h, c), each (N, hidden)).

    Introduced in chapter 5 (CarRacing) and chapter 8 (Doom).
    """
    weights = _weights(env, weights)
    m = load_model(MDNRNN, MDNRNNConfig, weights, "mdnrnn", env)[0]
    c = m.config
    ctrl, _ = load_model(Controller, ControllerConfig, weights, "controller", env)
    from ..controller import READS
    linear = getattr(ctrl, "net", None)
    if not isinstance(linear, torch.nn.Linear):
        raise WMError(f"the dream widget runs a linear C; {weights} holds a {ctrl.config.kind!r} one")
    mu, logvar = load_initial_z(weights / "initial_z.npz", c.z_size) if initial is None else initial
    mu = np.asarray(mu, np.float32)
    logvar = None if logvar is None else np.asarray(logvar, np.float32)
    if mu.ndim != 2 or mu.shape[1] != c.z_size or (logvar is not None and logvar.shape != mu.shape):
        raise WMError(f"initial must be (mu, logvar), each (N, {c.z_size}), got {mu.shape} and "
                      f"{None if logvar is None else logvar.shape}")
    if initial_state is not None:
        initial_state = [np.asarray(x, np.float32) for x in initial_state]
        if len(initial_state) != 2 or any(x.shape != (len(mu), c.hidden_size) for x in initial_state):
            raise WMError(f"initial_state must be (h, c), each ({len(mu)}, {c.hidden_size}): one per start")
    pick = np.random.default_rng(seed).choice(len(mu), min(starts, len(mu)), replace=False)
    vae = load_model(ConvVAE, VAEConfig, weights, "vae", env)[0].eval()
    first = tensor_to_frames(vae.decode(torch.as_tensor(mu[pick[:1]], dtype=torch.float32)))[0]
    models = write_models(assets_dir(), env, weights)
    r = lambda a: np.round(np.asarray(a, np.float64), 5).tolist()
    return BrowserWidget({
        "kind": "dream", "env": env, "zSize": c.z_size, "hidden": c.hidden_size, "mixtures": c.num_mixtures,
        "actionSize": c.action_size, "doneHead": bool(c.done_head), "tau": float(tau), "seed": int(seed),
        "maxSteps": int(max_steps), "decoder": models["decoder"][0], "m": models["m"][0],
        "bytes": _check_budget(models) + _runtime_bytes(), "png": _data_uri(first),
        "initial": {"mu": r(mu[pick]), **({} if logvar is None else {"logvar": r(logvar[pick])}),
                    **({} if initial_state is None else {"h": r(initial_state[0][pick]), "c": r(initial_state[1][pick])})},
        "controller": {"reads": READS[ctrl.config.kind], "W": r(linear.weight.detach().float()),
                       "b": None if linear.bias is None else r(linear.bias.detach().float())}})
