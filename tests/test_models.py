"""Tests of V (ConvVAE), M (MDN-RNN), C (controller) and their checkpoints.

Every check compares against an independent reference (torch.distributions, the paper's table,
exact round trips) so that a wrong formula or a wrong layer size fails.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

from wmlib.checkpoint import load_model, save_model
from wmlib.run.profiles import param_counts
from wmlib.controller import KINDS, Controller, ControllerConfig
from wmlib.errors import WMError
from wmlib.mdnrnn import MDNRNN, MDNRNNConfig, mdn_nll, sample_next_z
from wmlib.vae import ConvVAE, VAEConfig, VAEOutput, frames_to_tensor, kl_divergence, tensor_to_frames, vae_loss

REPO = Path(__file__).resolve().parents[1]

CARRACING_M = dict(z_size=32, action_size=3, hidden_size=256)
DOOM_M = dict(z_size=64, action_size=1, hidden_size=512, restart_input=True, done_head=True)


# --------------------------------------------------------------------------- helpers

def _reference_logprob(logpi, mu, logsigma, target):
    """log p(target) per (B, T, z) with torch.distributions."""
    mix = MixtureSameFamily(Categorical(logits=logpi), Normal(mu, logsigma.exp()))
    return mix.log_prob(target)


def _random_mixture(B=3, T=5, z=4, K=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logpi = torch.log_softmax(torch.randn(B, T, z, K, generator=g, dtype=dtype), dim=-1)
    mu = torch.randn(B, T, z, K, generator=g, dtype=dtype) * 2
    logsigma = torch.randn(B, T, z, K, generator=g, dtype=dtype) * 0.5 - 0.3
    target = torch.randn(B, T, z, generator=g, dtype=dtype) * 2
    return logpi, mu, logsigma, target


# --------------------------------------------------------------------------- 1. mixture NLL

def test_mdn_nll_matches_torch_distributions_without_mask():
    logpi, mu, logsigma, target = _random_mixture()
    expected = -_reference_logprob(logpi, mu, logsigma, target).mean()
    got = mdn_nll(logpi, mu, logsigma, target)
    assert got.shape == ()
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got, expected)


def test_mdn_nll_matches_with_two_components_and_sharp_sigmas():
    # logpi is normalised, as MDNRNN.forward returns it; a second shape and much smaller sigmas
    logpi, mu, logsigma, target = _random_mixture(B=2, T=7, z=3, K=2, seed=3)
    logsigma = logsigma - 2.0
    expected = -_reference_logprob(logpi, mu, logsigma, target).mean()
    got = mdn_nll(logpi, mu, logsigma, target)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_mdn_nll_with_mask_is_masked_mean():
    logpi, mu, logsigma, target = _random_mixture(B=3, T=6, z=4, seed=1)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0],
                         [1, 1, 1, 1, 1, 1],
                         [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    lp = _reference_logprob(logpi, mu, logsigma, target)  # (B, T, z)
    expected = -lp[mask].mean()  # mean over the masked steps and all z dims
    got = mdn_nll(logpi, mu, logsigma, target, mask)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got, expected)
    # the masked-out steps must not matter at all
    target2 = target.clone()
    target2[~mask] = 1e3
    assert torch.allclose(mdn_nll(logpi, mu, logsigma, target2, mask), got, atol=1e-12, rtol=0)
    # and the unmasked value differs
    assert not torch.allclose(mdn_nll(logpi, mu, logsigma, target), got)
    # a float mask gives the same answer as a bool one
    assert torch.allclose(mdn_nll(logpi, mu, logsigma, target, mask.double()), got, atol=1e-12, rtol=0)


def test_mdn_nll_on_real_mdnrnn_outputs():
    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(**CARRACING_M))
    B, T = 2, 6
    z = torch.randn(B, T, 32)
    a = torch.rand(B, T, 3) * 2 - 1
    with torch.no_grad():
        out = m(z, a)
        target = torch.randn(B, T, 32)
        expected = -_reference_logprob(out.logpi, out.mu, out.logsigma, target).mean()
        got = mdn_nll(out.logpi, out.mu, out.logsigma, target)
        assert got.dtype == torch.float32
        assert torch.allclose(got, expected, rtol=1e-5, atol=0), (got, expected)
        mask = torch.ones(B, T, dtype=torch.bool)
        mask[1, 3:] = False
        expected_m = -_reference_logprob(out.logpi, out.mu, out.logsigma, target)[mask].mean()
        got_m = mdn_nll(out.logpi, out.mu, out.logsigma, target, mask)
        assert torch.allclose(got_m, expected_m, rtol=1e-5, atol=0), (got_m, expected_m)


# --------------------------------------------------------------------------- 2. VAE KL and loss

def test_kl_divergence_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 32, generator=g, dtype=torch.float64)
    logvar = torch.randn(5, 32, generator=g, dtype=torch.float64)
    expected = torch.distributions.kl_divergence(Normal(mu, torch.exp(0.5 * logvar)),
                                                 Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    got = kl_divergence(mu, logvar)
    assert got.shape == (5,)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    # zero KL at the prior
    assert torch.allclose(kl_divergence(torch.zeros(2, 8), torch.zeros(2, 8)), torch.zeros(2), atol=1e-7)


def _loss_case(mu, logvar, cfg):
    g = torch.Generator().manual_seed(1)
    B = mu.shape[0]
    x = torch.rand(B, 3, 64, 64, generator=g)
    recon = torch.rand(B, 3, 64, 64, generator=g)
    out = VAEOutput(recon, mu, logvar, mu)
    recon_err = (recon - x).pow(2).sum(dim=(1, 2, 3))
    return vae_loss(x, out, cfg), recon_err


def test_vae_loss_applies_kl_floor_below():
    cfg = VAEConfig(z_size=32, kl_tolerance=0.5)
    floor = cfg.kl_tolerance * cfg.z_size  # 16 nats
    mu = torch.full((4, 32), 0.1)  # KL = 0.5 * 32 * 0.01 = 0.16 < 16
    logvar = torch.zeros(4, 32)
    loss, recon_err = _loss_case(mu, logvar, cfg)
    kl = kl_divergence(mu, logvar)
    assert (kl < floor).all()
    assert torch.allclose(loss.kl, kl.mean(), rtol=1e-6)  # reported KL is before the floor
    assert torch.allclose(loss.recon, recon_err.mean(), rtol=1e-6)
    assert torch.allclose(loss.loss, recon_err.mean() + floor, rtol=1e-6)


def test_vae_loss_uses_kl_above_floor():
    cfg = VAEConfig(z_size=32, kl_tolerance=0.5)
    floor = cfg.kl_tolerance * cfg.z_size
    mu = torch.full((4, 32), 2.0)  # KL = 0.5 * 32 * 4 = 64 > 16
    logvar = torch.zeros(4, 32)
    loss, recon_err = _loss_case(mu, logvar, cfg)
    kl = kl_divergence(mu, logvar)
    assert (kl > floor).all()
    assert torch.allclose(loss.loss, recon_err.mean() + kl.mean(), rtol=1e-6)
    assert torch.allclose(loss.kl, torch.tensor(64.0), rtol=1e-6)


def test_vae_loss_floor_is_per_sample():
    cfg = VAEConfig(z_size=32, kl_tolerance=0.5)
    floor = cfg.kl_tolerance * cfg.z_size
    mu = torch.stack([torch.full((32,), 0.1), torch.full((32,), 2.0)])
    logvar = torch.zeros(2, 32)
    loss, recon_err = _loss_case(mu, logvar, cfg)
    kl = kl_divergence(mu, logvar)
    expected = (recon_err + torch.stack([torch.tensor(floor), kl[1]])).mean()
    assert torch.allclose(loss.loss, expected, rtol=1e-6)


# --------------------------------------------------------------------------- 3. temperature

def test_sample_next_z_zero_temperature_returns_mean_of_argmax_component():
    B, z, K = 4, 6, 5
    g = torch.Generator().manual_seed(0)
    best = torch.tensor([0, 1, 2, 3, 4, 2])  # the argmax differs across dims
    logits = torch.randn(B, z, K, generator=g) * 0.1
    logits.scatter_(-1, best.expand(B, z).unsqueeze(-1), 1.0)  # clear winner, margin >= ~0.6
    logpi = torch.log_softmax(logits, dim=-1)
    mu = torch.randn(B, z, K, generator=g) * 3
    logsigma = torch.zeros(B, z, K)  # sigma 1: noise is sqrt(tau) = 1e-3
    expected = mu.gather(-1, best.expand(B, z).unsqueeze(-1)).squeeze(-1)
    for seed in range(3):
        out = sample_next_z(logpi, mu, logsigma, tau=1e-6, generator=torch.Generator().manual_seed(seed))
        assert out.shape == (B, z)
        assert torch.allclose(out, expected, atol=1e-2, rtol=0), (out - expected).abs().max()
    # also for the (B, T, z, K) layout the MDNRNN produces
    out4 = sample_next_z(logpi.unsqueeze(1), mu.unsqueeze(1), logsigma.unsqueeze(1), tau=1e-6,
                         generator=torch.Generator().manual_seed(0))
    assert out4.shape == (B, 1, z)
    assert torch.allclose(out4[:, 0], expected, atol=1e-2, rtol=0)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_sample_next_z_rejects_non_positive_tau(tau):
    logpi, mu, logsigma, _ = _random_mixture(B=1, T=1, z=2, K=3, dtype=torch.float32)
    with pytest.raises(ValueError):
        sample_next_z(logpi, mu, logsigma, tau=tau)


def test_sample_next_z_tau_one_matches_mixture_moments():
    z, K, N = 3, 3, 40_000
    logpi = torch.log(torch.tensor([[0.2, 0.5, 0.3],
                                    [0.7, 0.2, 0.1],
                                    [1 / 3, 1 / 3, 1 / 3]]))
    mu = torch.tensor([[-2.0, 0.0, 3.0],
                       [1.0, -1.0, 4.0],
                       [0.5, 0.5, -5.0]])
    logsigma = torch.log(torch.tensor([[0.5, 1.0, 0.3],
                                       [0.2, 2.0, 1.0],
                                       [1.0, 0.1, 0.5]]))
    pi = logpi.exp()
    mean = (pi * mu).sum(-1)
    var = (pi * (logsigma.exp() ** 2 + mu ** 2)).sum(-1) - mean ** 2
    g = torch.Generator().manual_seed(1234)
    samples = sample_next_z(logpi.expand(N, z, K), mu.expand(N, z, K), logsigma.expand(N, z, K),
                            tau=1.0, generator=g)
    assert samples.shape == (N, z)
    emp_mean, emp_var = samples.mean(0), samples.var(0)
    # standard error of the mean is sqrt(var / N) ~ 0.015; allow a wide margin
    assert torch.allclose(emp_mean, mean, atol=0.1), (emp_mean, mean)
    assert torch.allclose(emp_var, var, rtol=0.08), (emp_var, var)


def test_sample_next_z_same_generator_seed_same_sample():
    logpi, mu, logsigma, _ = _random_mixture(B=2, T=3, z=4, K=5, dtype=torch.float32)
    a = sample_next_z(logpi, mu, logsigma, tau=1.15, generator=torch.Generator().manual_seed(7))
    b = sample_next_z(logpi, mu, logsigma, tau=1.15, generator=torch.Generator().manual_seed(7))
    c = sample_next_z(logpi, mu, logsigma, tau=1.15, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --------------------------------------------------------------------------- 4. controller flat parameters

def _controller(kind):
    return Controller(ControllerConfig(kind=kind))


@pytest.mark.parametrize("kind", KINDS)
def test_controller_flat_round_trip(kind):
    torch.manual_seed(0)
    c = _controller(kind)
    flat = c.get_flat()
    assert flat.shape == (c.num_params,)
    before = [p.detach().clone() for p in c.parameters()]
    c.set_flat(flat)
    for p, q in zip(c.parameters(), before):
        assert torch.equal(p, q)
    assert np.array_equal(c.get_flat(), flat)


@pytest.mark.parametrize("kind", KINDS)
def test_controller_set_random_vector(kind):
    c = _controller(kind)
    v = np.random.default_rng(1).normal(size=c.num_params)
    assert c.set_flat(v) is c
    got = c.get_flat()
    assert np.array_equal(got, v.astype(np.float32).astype(np.float64))
    assert np.allclose(got, v, rtol=1e-6, atol=1e-7)
    # set_flat changes what the controller computes
    x = torch.randn(2, c.config.input_size)
    y1 = c(x)
    c.set_flat(-v)
    assert not torch.allclose(c(x), y1)


@pytest.mark.parametrize("kind", KINDS)
def test_controller_set_flat_rejects_bad_vectors(kind):
    c = _controller(kind)
    n = c.num_params
    before = c.get_flat()
    for bad in (np.zeros(n - 1), np.zeros(n + 1), np.zeros((1, n))):
        with pytest.raises(ValueError):
            c.set_flat(bad)
    v = np.zeros(n)
    v[n // 2] = np.nan
    with pytest.raises(ValueError):
        c.set_flat(v)
    v[n // 2] = np.inf
    with pytest.raises(ValueError):
        c.set_flat(v)
    assert np.array_equal(c.get_flat(), before)  # a rejected vector leaves the weights alone


@pytest.mark.parametrize("cfg,n", [
    (dict(kind="zh", z_size=32, rnn_hidden=256, action_size=3), 867),
    (dict(kind="z", z_size=32, rnn_hidden=256, action_size=3), 99),
    (dict(kind="z_hidden", z_size=32, rnn_hidden=256, action_size=3), 1443),
    (dict(kind="zch", z_size=64, rnn_hidden=512, action_size=1), 1088),
])
def test_controller_param_counts(cfg, n):
    c = Controller(ControllerConfig(**cfg))
    assert c.num_params == n
    assert len(c.get_flat()) == n
    out = c(torch.zeros(3, c.config.input_size))
    assert out.shape == (3, cfg["action_size"])


def test_controller_unknown_kind_and_wrong_input():
    with pytest.raises(ValueError):
        ControllerConfig(kind="nope")
    c = _controller("zh")
    with pytest.raises(ValueError):
        c(torch.zeros(1, 10))


def test_controller_features_layout():
    c = Controller(ControllerConfig(kind="zch", z_size=2, rnn_hidden=3, action_size=1))
    z, h, cell = torch.full((1, 2), 1.0), torch.full((1, 3), 2.0), torch.full((1, 3), 3.0)
    f = c.features(z, h, cell)
    assert f.tolist() == [[1, 1, 3, 3, 3, 2, 2, 2]]  # [z, c, h]
    c2 = Controller(ControllerConfig(kind="zh", z_size=2, rnn_hidden=3, action_size=1))
    assert c2.features(z, h, cell).tolist() == [[1, 1, 2, 2, 2]]


# --------------------------------------------------------------------------- 5. the paper's table

@pytest.fixture(scope="module")
def counts():
    return {"carracing": param_counts("carracing"), "doom": param_counts("doom")}


@pytest.fixture(scope="module", autouse=True)
def info_process():
    """Start `python -m wmlib info` once, at the start of this module, so that its interpreter start-up
    (several seconds: torch and cma imports) overlaps the other tests instead of adding to them."""
    proc = subprocess.Popen([sys.executable, "-m", "wmlib", "info", "--env", "doom", "--json"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def test_param_counts_match_paper(counts):
    car, doom = counts["carracing"], counts["doom"]
    assert car["env"] == "carracing" and doom["env"] == "doom"
    assert car["vae"] == 4_348_547
    assert doom["vae"] == 4_446_915
    assert car["mdnrnn"] == 422_368
    assert doom["mdnrnn"] == 1_678_785
    assert car["controller"] == 867
    assert doom["controller"] == 1_088
    assert car["mdnrnn_pytorch"] == car["mdnrnn"] + 4 * 256
    assert doom["mdnrnn_pytorch"] == doom["mdnrnn"] + 4 * 512
    assert (car["z_size"], car["rnn_hidden"], car["controller_kind"]) == (32, 256, "zh")
    assert (doom["z_size"], doom["rnn_hidden"], doom["controller_kind"]) == (64, 512, "zch")


def test_info_command_json(info_process, counts):
    out, err = info_process.communicate(timeout=120)
    assert info_process.returncode == 0, err
    info = json.loads(out)
    assert info == counts["doom"]
    assert info["env"] == "doom"
    assert info["vae"] == 4_446_915
    assert info["mdnrnn"] == 1_678_785
    assert info["mdnrnn_pytorch"] == 1_678_785 + 4 * 512
    assert info["controller"] == 1_088
    assert (info["z_size"], info["rnn_hidden"], info["controller_kind"]) == (64, 512, "zch")


# --------------------------------------------------------------------------- 6. shapes

@pytest.mark.parametrize("z", [32, 64])
def test_vae_shapes(z):
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(z_size=z))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        assert mu.shape == (2, z) and logvar.shape == (2, z)
        y = vae.decode(mu)
        assert y.shape == (2, 3, 64, 64)
        assert (y >= 0).all() and (y <= 1).all()
        out = vae(x)
        assert out.recon.shape == (2, 3, 64, 64)
        assert out.mu.shape == out.logvar.shape == out.z.shape == (2, z)
        assert vae.decode(torch.zeros(1, z)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("shape", [(2, 64, 64, 3), (3, 64, 64), (2, 3, 32, 32), (2, 1, 64, 64)])
def test_vae_encode_rejects_wrong_shape(shape):
    vae = ConvVAE(VAEConfig(z_size=32))
    with pytest.raises(ValueError):
        vae.encode(torch.rand(*shape))


def test_frames_to_tensor_validation_and_conversion():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    t = frames_to_tensor(frames)
    assert t.shape == (3, 3, 64, 64)
    assert t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0
    # channel order: t[b, c, y, x] == frames[b, y, x, c] / 255
    assert torch.allclose(t[1, 2, 5, 7], torch.tensor(frames[1, 5, 7, 2] / 255.0, dtype=torch.float32))
    assert torch.allclose(t, torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0)
    # torch input and read-only numpy input are accepted
    assert torch.equal(frames_to_tensor(torch.from_numpy(frames)), t)
    ro = frames.copy()
    ro.flags.writeable = False
    assert torch.equal(frames_to_tensor(ro), t)
    with pytest.raises(ValueError):
        frames_to_tensor(frames.astype(np.float32))
    with pytest.raises(ValueError):
        frames_to_tensor(frames.astype(np.int64))
    with pytest.raises(ValueError):
        frames_to_tensor(frames[0])  # (64, 64, 3): no batch axis
    with pytest.raises(ValueError):
        frames_to_tensor(np.zeros((2, 3, 64, 64), dtype=np.uint8))  # channels first
    with pytest.raises(ValueError):
        frames_to_tensor(np.zeros((2, 32, 32, 3), dtype=np.uint8))


def test_tensor_to_frames_inverts_frames_to_tensor():
    k = np.arange(256, dtype=np.uint8)
    frames = np.resize(k, (2, 64, 64, 3)).astype(np.uint8)
    frames = np.ascontiguousarray(np.random.default_rng(1).permutation(frames.reshape(-1)).reshape(2, 64, 64, 3))
    back = tensor_to_frames(frames_to_tensor(frames))
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.uint8 and back.shape == (2, 64, 64, 3)
    assert np.array_equal(back, frames)
    # every value k/255 maps back to k
    vals = torch.arange(256, dtype=torch.float32).div(255.0).view(1, 1, 1, 256).expand(1, 3, 64, 256)
    vals = vals[..., :64].contiguous()
    assert np.array_equal(tensor_to_frames(vals)[0, 0, :, 0], np.arange(64, dtype=np.uint8))


def test_mdnrnn_forward_shapes_carracing():
    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(**CARRACING_M))
    B, T = 2, 7
    with torch.no_grad():
        out = m(torch.randn(B, T, 32), torch.randn(B, T, 3))
    for t in (out.logpi, out.mu, out.logsigma):
        assert t.shape == (B, T, 32, 5)
    assert out.done_logit is None
    assert out.hidden.shape == (B, T, 256)
    assert out.state[0].shape == out.state[1].shape == (1, B, 256)
    # logpi is normalised over the mixture axis
    assert torch.allclose(out.logpi.exp().sum(-1), torch.ones(B, T, 32), atol=1e-5)
    # the LSTM output at the last step is the returned h state
    assert torch.allclose(out.hidden[:, -1], out.state[0][0], atol=1e-6)


def test_mdnrnn_forward_shapes_doom():
    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(**DOOM_M))
    assert m.config.input_size == 64 + 1 + 1
    B, T = 2, 5
    z, a = torch.randn(B, T, 64), torch.randn(B, T, 1)
    restart = torch.zeros(B, T)
    restart[:, 0] = 1
    with torch.no_grad():
        out = m(z, a, restart)
        out_none = m(z, a)
    for t in (out.logpi, out.mu, out.logsigma):
        assert t.shape == (B, T, 64, 5)
    assert out.done_logit is not None and out.done_logit.shape == (B, T)
    assert out.hidden.shape == (B, T, 512)
    assert out.state[0].shape == (1, B, 512)
    # the restart flag is an input: it changes the outputs; None means all zeros
    assert not torch.allclose(out.mu, out_none.mu)
    with torch.no_grad():
        out_zero = m(z, a, torch.zeros(B, T))
    assert torch.allclose(out_zero.mu, out_none.mu, atol=1e-6)


def test_mdnrnn_step_matches_forward():
    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(**DOOM_M))
    B, T = 3, 4
    z, a = torch.randn(B, T, 64), torch.randn(B, T, 1)
    restart = torch.zeros(B, T)
    with torch.no_grad():
        full = m(z, a, restart)
        state = m.initial_state(B)
        assert state[0].shape == state[1].shape == (1, B, 512)
        for t in range(T):
            s = m.step(z[:, t], a[:, t], restart[:, t], state)
            assert s.logpi.shape == (B, 1, 64, 5)
            assert s.done_logit.shape == (B, 1)
            assert s.hidden.shape == (B, 1, 512)
            state = s.state
            assert torch.allclose(s.mu[:, 0], full.mu[:, t], atol=1e-5)
            assert torch.allclose(s.done_logit[:, 0], full.done_logit[:, t], atol=1e-5)
        assert torch.allclose(state[0], full.state[0], atol=1e-5)
        assert torch.allclose(state[1], full.state[1], atol=1e-5)
        car = MDNRNN(MDNRNNConfig(**CARRACING_M))
        s = car.step(torch.randn(B, 32), torch.randn(B, 3))
        assert s.mu.shape == (B, 1, 32, 5) and s.done_logit is None


def test_mdnrnn_rejects_wrong_sizes():
    m = MDNRNN(MDNRNNConfig(**CARRACING_M))
    with pytest.raises(ValueError):
        m(torch.randn(1, 2, 31), torch.randn(1, 2, 3))
    with pytest.raises(ValueError):
        m(torch.randn(1, 2, 32), torch.randn(1, 2, 1))
    with pytest.raises(ValueError):
        m.step(torch.randn(1, 64), torch.randn(1, 3))
    with pytest.raises(ValueError):
        m.step(torch.randn(1, 32), torch.randn(1, 2))
    d = MDNRNN(MDNRNNConfig(**DOOM_M))
    with pytest.raises(ValueError):
        d(torch.randn(1, 2, 64), torch.randn(1, 2, 3))


# --------------------------------------------------------------------------- 7. checkpoints

def _small_mdnrnn():
    torch.manual_seed(0)
    return MDNRNN(MDNRNNConfig(z_size=8, action_size=1, hidden_size=16, restart_input=True, done_head=True))


def test_checkpoint_round_trip_vae(tmp_path):
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(z_size=32, kl_tolerance=0.25)).eval()
    save_model(vae, tmp_path, "vae", "carracing")
    assert (tmp_path / "vae.safetensors").exists() and (tmp_path / "vae.json").exists()
    loaded, meta = load_model(ConvVAE, VAEConfig, tmp_path, "vae", env="carracing")
    assert meta["env"] == "carracing" and meta["model"] == "ConvVAE"
    assert loaded.config == vae.config
    assert not loaded.training
    for (k, v), (k2, v2) in zip(vae.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(vae.encode(x)[0], loaded.encode(x)[0])
        assert torch.equal(vae.decode(torch.ones(1, 32)), loaded.decode(torch.ones(1, 32)))
    # no leftover temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.json", "vae.safetensors"]


def test_checkpoint_round_trip_mdnrnn_and_controller(tmp_path):
    m = _small_mdnrnn().eval()
    save_model(m, tmp_path, "mdnrnn", "doom", extra={"step": 12})
    loaded, meta = load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn", env="doom")
    assert meta["step"] == 12
    assert loaded.config == m.config
    z, a = torch.randn(2, 3, 8), torch.randn(2, 3, 1)
    with torch.no_grad():
        o1, o2 = m(z, a), loaded(z, a)
    assert torch.equal(o1.mu, o2.mu) and torch.equal(o1.done_logit, o2.done_logit)

    c = Controller(ControllerConfig(kind="zch", z_size=8, rnn_hidden=16, action_size=1))
    c.set_flat(np.random.default_rng(0).normal(size=c.num_params))
    save_model(c, tmp_path, "controller", "doom")
    c2, _ = load_model(Controller, ControllerConfig, tmp_path, "controller")  # env=None: no check
    assert np.array_equal(c2.get_flat(), c.get_flat())


def test_checkpoint_wrong_env(tmp_path):
    save_model(_small_mdnrnn(), tmp_path, "mdnrnn", "doom")
    with pytest.raises(WMError) as e:
        load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn", env="carracing")
    msg = str(e.value)
    assert "doom" in msg and "carracing" in msg


def test_checkpoint_wrong_model_class(tmp_path):
    save_model(_small_mdnrnn(), tmp_path, "mdnrnn", "doom")
    with pytest.raises(WMError):
        load_model(ConvVAE, VAEConfig, tmp_path, "mdnrnn", env="doom")


def test_checkpoint_missing_files(tmp_path):
    with pytest.raises(WMError):
        load_model(ConvVAE, VAEConfig, tmp_path, "vae")
    with pytest.raises(WMError):
        load_model(ConvVAE, VAEConfig, tmp_path / "does-not-exist", "vae")
    save_model(_small_mdnrnn(), tmp_path, "mdnrnn", "doom")
    (tmp_path / "mdnrnn.json").unlink()
    with pytest.raises(WMError):
        load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn")
    save_model(_small_mdnrnn(), tmp_path, "m2", "doom")
    (tmp_path / "m2.safetensors").unlink()
    with pytest.raises(WMError):
        load_model(MDNRNN, MDNRNNConfig, tmp_path, "m2")


def test_checkpoint_truncated_safetensors(tmp_path):
    save_model(_small_mdnrnn(), tmp_path, "mdnrnn", "doom")
    p = tmp_path / "mdnrnn.safetensors"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(WMError):
        load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn", env="doom")
    p.write_bytes(data[:5])  # not even a header
    with pytest.raises(WMError):
        load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn", env="doom")
    p.write_bytes(b"")
    with pytest.raises(WMError):
        load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn", env="doom")


def test_checkpoint_damaged_json(tmp_path):
    save_model(_small_mdnrnn(), tmp_path, "mdnrnn", "doom")
    (tmp_path / "mdnrnn.json").write_text('{"model": "MDNRNN", ')
    with pytest.raises(WMError):
        load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn", env="doom")


def test_checkpoint_config_does_not_match_weights(tmp_path):
    save_model(ConvVAE(VAEConfig(z_size=32)), tmp_path, "vae", "carracing")
    cpath = tmp_path / "vae.json"
    meta = json.loads(cpath.read_text())
    meta["config"]["z_size"] = 64
    cpath.write_text(json.dumps(meta))
    with pytest.raises(WMError):
        load_model(ConvVAE, VAEConfig, tmp_path, "vae", env="carracing")


def test_checkpoint_invalid_config_keys(tmp_path):
    save_model(_small_mdnrnn(), tmp_path, "mdnrnn", "doom")
    cpath = tmp_path / "mdnrnn.json"
    meta = json.loads(cpath.read_text())
    meta["config"]["no_such_field"] = 1
    cpath.write_text(json.dumps(meta))
    with pytest.raises(WMError):
        load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn", env="doom")


def test_checkpoint_nan_weight(tmp_path):
    m = _small_mdnrnn()
    with torch.no_grad():
        m.head.weight[0, 0] = float("nan")
    save_model(m, tmp_path, "mdnrnn", "doom")
    with pytest.raises(WMError):
        load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn", env="doom")


def test_checkpoint_float16(tmp_path):
    m = _small_mdnrnn().eval()
    save_model(m, tmp_path, "mdnrnn", "doom", dtype=torch.float16)
    full = tmp_path / "full"
    save_model(m, full, "mdnrnn", "doom")
    assert (tmp_path / "mdnrnn.safetensors").stat().st_size < (full / "mdnrnn.safetensors").stat().st_size
    loaded, _ = load_model(MDNRNN, MDNRNNConfig, tmp_path, "mdnrnn", env="doom")
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32, k
        assert torch.allclose(v, m.state_dict()[k], rtol=1e-3, atol=1e-4), k
    z, a = torch.randn(2, 3, 8), torch.randn(2, 3, 1)
    with torch.no_grad():
        assert torch.allclose(loaded(z, a).mu, m(z, a).mu, atol=1e-2)


# --------------------------------------------------------------------------- 8. determinism

def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_weights():
    torch.manual_seed(3)
    v1 = ConvVAE(VAEConfig(z_size=32))
    torch.manual_seed(3)
    v2 = ConvVAE(VAEConfig(z_size=32))
    assert _same_weights(v1, v2)
    torch.manual_seed(4)
    v3 = ConvVAE(VAEConfig(z_size=32))
    assert not _same_weights(v1, v3)

    torch.manual_seed(3)
    m1 = MDNRNN(MDNRNNConfig(**CARRACING_M))
    torch.manual_seed(3)
    m2 = MDNRNN(MDNRNNConfig(**CARRACING_M))
    assert _same_weights(m1, m2)
    torch.manual_seed(5)
    m3 = MDNRNN(MDNRNNConfig(**CARRACING_M))
    assert not _same_weights(m1, m3)


def test_vae_sample_generator_determinism():
    mu = torch.randn(4, 32)
    logvar = torch.randn(4, 32) * 0.1
    a = ConvVAE.sample(mu, logvar, torch.Generator().manual_seed(11))
    b = ConvVAE.sample(mu, logvar, torch.Generator().manual_seed(11))
    c = ConvVAE.sample(mu, logvar, torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the noise scale is exp(0.5 * logvar): with a generator, eps can be recovered exactly
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(11))
    assert torch.allclose(a, mu + torch.exp(0.5 * logvar) * eps, atol=1e-6)
    # very negative logvar collapses onto mu
    d = ConvVAE.sample(mu, torch.full_like(mu, -60.0), torch.Generator().manual_seed(11))
    assert torch.allclose(d, mu, atol=1e-10)


def test_vae_forward_generator_determinism():
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(z_size=32))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        o1 = vae(x, torch.Generator().manual_seed(5))
        o2 = vae(x, torch.Generator().manual_seed(5))
    assert torch.equal(o1.z, o2.z) and torch.equal(o1.recon, o2.recon)
