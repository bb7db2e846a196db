"""V's decoder and one step of M as ONNX files, for the book's widgets that run in the reader's browser.

The page runs them with onnxruntime-web and samples the next z itself, as wmlib.mdnrnn.sample_next_z does:
a component k ~ softmax(logpi / tau), then z = mu_k + exp(logsigma_k) * sqrt(tau) * eps. So M's file stops
at the mixture parameters (and p(done)); everything random happens in the page.

    export_decoder(vae, "decoder.onnx")   # z (B, z) -> frames (B, 64, 64, 3) in [0, 1]
    export_m_step(mdnrnn, "m_step.onnx")  # z, action(, restart), h, c -> logpi, mu, logsigma, p_done, h, c

Introduced in chapter 3 (V) and chapter 8 (the dream); tests/test_onnx_export.py checks both against torch.
"""
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_path
from ..mdnrnn import MDNRNN
from ..vae import ConvVAE

OPSET = 17


class _Decoder(nn.Module):
    def __init__(self, vae: ConvVAE):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z).permute(0, 2, 3, 1)  # channels last: what a canvas's ImageData wants


class _MStep(nn.Module):
    def __init__(self, mdnrnn: MDNRNN):
        super().__init__()
        self.m = mdnrnn

    def forward(self, z, action, restart, h, c):
        out = self.m.step(z, action, restart if self.m.config.restart_input else None, (h, c))
        p_done = (torch.sigmoid(out.done_logit[:, 0]) if out.done_logit is not None
                  else torch.zeros(z.shape[0], dtype=z.dtype))
        return out.logpi[:, 0], out.mu[:, 0], out.logsigma[:, 0], p_done, out.state[0], out.state[1]


def _export(module: nn.Module, inputs: tuple, names_in: list, names_out: list, path) -> Path:
    path = Path(path)
    batch = {name: {0: "batch"} for name in names_in + names_out if name not in ("h", "c", "h_next", "c_next")}
    batch.update({name: {1: "batch"} for name in ("h", "c", "h_next", "c_next") if name in names_in + names_out})
    # The TorchScript exporter (dynamo=False): one self-contained file per model, which onnxruntime-web loads
    # as is. torch 2.13's default exporter wrote the weights to a side file and a Split that onnxruntime
    # 1.32 rejects at this opset.
    # The tracer warns about the models' input checks (traced as constants: the checks are for torch callers),
    # the LSTM's batch (its state is an input here, which is the fix it asks for) and its own deprecation:
    # none concerns the exported file, which tests/test_onnx_export.py compares with torch.
    with torch.no_grad(), warnings.catch_warnings(), atomic_path(path) as tmp:  # never a half-written model
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), inputs, str(tmp), input_names=names_in, output_names=names_out,
                          dynamic_axes=batch, opset_version=OPSET, dynamo=False)
    return path


def export_decoder(vae: ConvVAE, path) -> Path:
    """V's decoder as ONNX: input "z" (B, z_size) float32, output "frames" (B, 64, 64, 3) in [0, 1].

    Introduced in chapter 3.
    """
    z = torch.zeros(1, vae.config.z_size)
    return _export(_Decoder(vae.cpu()), (z,), ["z"], ["frames"], path)


def export_m_step(mdnrnn: MDNRNN, path) -> Path:
    """One step of M as ONNX. Inputs: "z" (B, z_size), "action" (B, action_size), "restart" (B,) (1 at an
    episode's first step; only for an M that reads it, Doom's), "h" and "c" (1, B, hidden). Outputs:
    "logpi", "mu", "logsigma" (B, z_size, mixtures), "p_done" (B,) (zeros without a done head), and the
    next state "h_next", "c_next".

    Introduced in chapter 8.
    """
    c = mdnrnn.config
    h = torch.zeros(1, 1, c.hidden_size)
    inputs = (torch.zeros(1, c.z_size), torch.zeros(1, c.action_size), torch.zeros(1), h, h.clone())
    return _export(_MStep(mdnrnn.cpu()), inputs, ["z", "action", "restart", "h", "c"],
                   ["logpi", "mu", "logsigma", "p_done", "h_next", "c_next"], path)


def half_weights(src, dst=None, min_size: int = 16) -> Path:
    """Store an exported model's float32 weights as float16 (half the bytes the page downloads) while it
    still computes in float32: each weight of at least `min_size` numbers becomes a float16 initializer and a
    Cast back to float32, which onnxruntime folds once when the model loads. Writes `dst` (default: `src`).

    Unlike converting the whole graph to float16, the arithmetic, the inputs and the outputs stay float32, so
    the only error is the weights' rounding (the decoder's frames move by well under one of 255 levels:
    tests/test_onnx_export.py measures it). Introduced in chapter 3.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src = Path(src)
    dst = Path(dst) if dst is not None else src
    model = onnx.load(str(src))
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_size:
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "__fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)  # the casts first: every node reads the weights under their old names
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return dst
