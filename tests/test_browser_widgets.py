"""The Python side of the widgets that run V and M in the reader's browser (wmlib/book/browser.py): what each
widget hands the page, the files it writes, the budget, and the kernel's file server. tests/test_book.py runs
the widgets themselves in Chromium on the built book."""
import base64
import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort  # in the test extras
import pytest
import torch

from wmlib import ConvVAE, VAEConfig, load_model
from wmlib.book import browser
from wmlib.errors import WMError

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"


def unwrap(script: Path) -> tuple[str, bytes]:
    """The name and bytes a WM_ASSET script hands the page."""
    m = re.fullmatch(r'WM_ASSET\(("[^"]+"),"([A-Za-z0-9+/=]*)"\);\n', script.read_text())
    assert m, f"{script} is not a WM_ASSET script"
    return json.loads(m.group(1)), base64.b64decode(m.group(2))


@pytest.fixture
def book_assets(tmp_path, monkeypatch):
    monkeypatch.setenv(browser.BOOK_ASSETS, str(tmp_path / "assets"))
    return tmp_path / "assets"


def car_frames(n=3):
    """V's own drawings of a few codes: real-looking CarRacing frames without playing the game."""
    vae = load_model(ConvVAE, VAEConfig, PRETRAINED / "carracing", "vae", "carracing")[0]
    with torch.no_grad():
        z = torch.randn(n, 32, generator=torch.Generator().manual_seed(0))
        return (vae.decode(z).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def test_asset_script_round_trip(tmp_path):
    data = bytes(range(256)) * 3
    path = tmp_path / "x.js"
    path.write_text(browser.asset_script("models/x.onnx", data))
    assert unwrap(path) == ("models/x.onnx", data)


def test_latent_explorer_hands_the_page_v_codes_sorted_by_use(book_assets):
    frames = car_frames()
    w = browser.latent_explorer("carracing", frames, weights=PRETRAINED / "carracing")
    cfg = w.config
    vae = load_model(ConvVAE, VAEConfig, PRETRAINED / "carracing", "vae", "carracing")[0]
    from wmlib.vae import frames_to_tensor
    with torch.no_grad():
        mu, logvar = vae.encode(frames_to_tensor(frames))
    np.testing.assert_allclose(np.array([s["z"] for s in cfg["samples"]]), mu.numpy(), atol=1e-4)
    kl = (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).mean(0).numpy()
    order = [d["index"] for d in cfg["dims"]]
    assert sorted(order) == list(range(32)) and list(kl[order]) == sorted(kl, reverse=True)
    # the decoder the page runs is the shipped V's, weights in float16
    name, data = unwrap(book_assets / (cfg["decoder"] + ".js"))
    assert name == cfg["decoder"]
    run = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = run.run(["frames"], {"z": mu.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, vae.decode(mu).permute(0, 2, 3, 1).numpy(), atol=1e-4)
    html = w._repr_html_()  # the book build: no code inline (the page loads _static/wm/wm_widgets.js), no server
    assert "WM.mount(" in html and "WM_ASSET = function" not in html and '"port"' not in html


def test_latent_explorer_rejects_bad_frames(book_assets):
    with pytest.raises(WMError, match=r"\(N, 64, 64, 3\) uint8"):
        browser.latent_explorer("carracing", np.zeros((2, 64, 64, 3), np.float32), weights=PRETRAINED / "carracing")
    with pytest.raises(WMError, match="one value per dimension"):
        browser.latent_explorer("carracing", car_frames(1), weights=PRETRAINED / "carracing", kl=np.ones(5))


@pytest.mark.parametrize("env", ["carracing", "doom"])
def test_dream_widget_hands_the_page_m_v_and_c(env, book_assets):
    from wmlib import Controller, ControllerConfig, MDNRNN, MDNRNNConfig
    w = browser.dream_widget(env, weights=PRETRAINED / env, tau=1.15, starts=4)
    cfg = w.config
    m = load_model(MDNRNN, MDNRNNConfig, PRETRAINED / env, "mdnrnn", env)[0].config
    c = load_model(Controller, ControllerConfig, PRETRAINED / env, "controller", env)[0]
    assert (cfg["zSize"], cfg["hidden"], cfg["mixtures"], cfg["actionSize"], cfg["doneHead"]) == \
        (m.z_size, m.hidden_size, m.num_mixtures, m.action_size, m.done_head)
    np.testing.assert_allclose(cfg["controller"]["W"], c.net.weight.detach().float().numpy(), atol=1e-5)
    assert cfg["controller"]["reads"] == ("zch" if env == "doom" else "zh")
    assert len(cfg["initial"]["mu"]) == 4 and "h" not in cfg["initial"]
    sizes = [(book_assets / (cfg[k] + ".js")).stat().st_size for k in ("decoder", "m")]
    assert sum(sizes) <= browser.PAGE_BUDGET  # Doom's: ~14 MB as scripts (10.6 MB of ONNX)


def test_dream_widget_checks_its_starts(book_assets):
    mu = np.zeros((3, 32), np.float32)
    with pytest.raises(WMError, match="initial must be"):
        browser.dream_widget("carracing", weights=PRETRAINED / "carracing", initial=(np.zeros((3, 7)), None))
    with pytest.raises(WMError, match="initial_state must be"):
        browser.dream_widget("carracing", weights=PRETRAINED / "carracing", initial=(mu, None),
                             initial_state=(np.zeros((3, 256)), np.zeros((2, 256))))
    w = browser.dream_widget("carracing", weights=PRETRAINED / "carracing", initial=(mu, None),
                             initial_state=(np.ones((3, 256)), np.ones((3, 256))))
    assert "logvar" not in w.config["initial"] and len(w.config["initial"]["h"]) == 3


def test_page_budget_is_enforced(book_assets, monkeypatch):
    monkeypatch.setattr(browser, "PAGE_BUDGET", 1_000_000)
    with pytest.raises(WMError, match="over the page budget"):
        browser.dream_widget("carracing", weights=PRETRAINED / "carracing")


def test_in_a_kernel_the_output_carries_the_code_and_the_kernel_serves_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv(browser.BOOK_ASSETS, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runtime = tmp_path / "vendor"  # stand-ins for onnxruntime-web's files (book/build.sh fetches the real ones)
    runtime.mkdir()
    for name in browser.RUNTIME:
        (runtime / name).write_bytes(name.encode() * 10)
    monkeypatch.setattr(browser, "vendor_runtime", lambda: runtime)
    w = browser.dream_widget("carracing", weights=PRETRAINED / "carracing", starts=2)
    html = w._repr_html_()
    assert browser.CODE.read_text() in html  # the same code as the built book's
    cfg = json.loads(re.search(r"WM\.mount\([^,]+, (\{.*\})\);", html).group(1))
    base = f"http://127.0.0.1:{cfg['port']}/"
    with urllib.request.urlopen(base + cfg["decoder"] + ".js") as r:
        assert r.status == 200 and r.read(10) == b"WM_ASSET(\""
    with urllib.request.urlopen(base + "ort/ort-wasm-simd-threaded.wasm.js") as r:  # prepared on first request
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        text = r.read().decode()
    assert base64.b64decode(re.search(r',"([^"]*)"', text).group(1)) == b"ort-wasm-simd-threaded.wasm" * 10


def test_the_kernel_server_says_why_the_runtime_is_missing(tmp_path, monkeypatch, capsys):
    def missing():
        raise WMError("the browser widgets need onnxruntime-web in _vendor/ort")
    monkeypatch.setattr(browser, "vendor_runtime", missing)
    port = browser.serve(str(tmp_path))
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ort/ort.wasm.min.js")
    assert e.value.code == 500
    assert "onnxruntime-web" in capsys.readouterr().err
