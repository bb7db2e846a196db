"""V's decoder and one step of M, exported to ONNX from the shipped weights, run in onnxruntime and
compared with the torch models (the browser widgets of issue "the book alive without a kernel"), both as
exported and with the weights stored in float16 as the pages load them (the shipped weights are float16
already, so the tolerance is the same)."""
from pathlib import Path

import numpy as np
import onnxruntime as ort  # in the test extras
import pytest
import torch

from wmlib import MDNRNN, ConvVAE, MDNRNNConfig, VAEConfig, load_model

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
ATOL = 1e-4


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def exported(path, half):
    """The exported file as the page gets it: weights stored in float16 (half_weights), or as exported."""
    if not half:
        return path
    from wmlib.book.onnx_export import half_weights
    small = half_weights(path, path.with_name("half_" + path.name))
    assert small.stat().st_size < 0.55 * path.stat().st_size, "the float16 weights did not halve the file"
    return small


HALF = pytest.mark.parametrize("half", [False, True], ids=["float32", "float16-weights"])


@HALF
@pytest.mark.parametrize("env", ["carracing", "doom"])
def test_exported_decoder_equals_torch(env, half, tmp_path):
    from wmlib.book.onnx_export import export_decoder

    vae = load_model(ConvVAE, VAEConfig, PRETRAINED / env, "vae", env)[0].eval()
    path = exported(export_decoder(vae, tmp_path / "decoder.onnx"), half)
    z = torch.randn(5, vae.config.z_size, generator=torch.Generator().manual_seed(0)) * 1.5
    frames = session(path).run(["frames"], {"z": z.numpy()})[0]
    with torch.no_grad():
        want = vae.decode(z).permute(0, 2, 3, 1).numpy()
    assert frames.shape == (5, 64, 64, 3)
    np.testing.assert_allclose(frames, want, atol=ATOL, rtol=0)


@HALF
@pytest.mark.parametrize("env", ["carracing", "doom"])
def test_exported_m_step_equals_torch_over_a_rollout(env, half, tmp_path):
    from wmlib.book.onnx_export import export_m_step

    m = load_model(MDNRNN, MDNRNNConfig, PRETRAINED / env, "mdnrnn", env)[0].eval()
    c = m.config
    run = session(exported(export_m_step(m, tmp_path / "m_step.onnx"), half))
    names = [i.name for i in run.get_inputs()]
    assert names == ["z", "action"] + (["restart"] if c.restart_input else []) + ["h", "c"]
    g = torch.Generator().manual_seed(1)
    B = 3
    h = torch.zeros(1, B, c.hidden_size)
    state = (h, h.clone())
    onnx_h, onnx_c = h.numpy(), h.numpy().copy()
    for t in range(20):  # the state carried over many steps, as in a dream
        z = torch.randn(B, c.z_size, generator=g)
        a = torch.rand(B, c.action_size, generator=g) * 2 - 1
        restart = torch.full((B,), float(t == 0))
        with torch.no_grad():
            out = m.step(z, a, restart if c.restart_input else None, state)
        feed = {"z": z.numpy(), "action": a.numpy(), "restart": restart.numpy(), "h": onnx_h, "c": onnx_c}
        logpi, mu, logsigma, p_done, onnx_h, onnx_c = run.run(None, {k: feed[k] for k in names})
        state = out.state
        for got, want in ((logpi, out.logpi[:, 0]), (mu, out.mu[:, 0]), (logsigma, out.logsigma[:, 0]),
                          (onnx_h, state[0]), (onnx_c, state[1])):
            np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=0)
        want_p = torch.sigmoid(out.done_logit[:, 0]).numpy() if c.done_head else np.zeros(B, np.float32)
        np.testing.assert_allclose(p_done, want_p, atol=ATOL, rtol=0)
    assert logpi.shape == (B, c.z_size, c.num_mixtures)
