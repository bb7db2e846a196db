"""The dream as a gymnasium environment, its vector version and the batched CMA-ES evaluation."""
import numpy as np
import pytest
import gymnasium as gym
import torch
from gymnasium.utils.env_checker import check_env

import wmlib  # noqa: F401  (registers wmlib/Dream-v0)
from wmlib.checkpoint import save_model, save_npz
from wmlib.controller import KINDS, Controller, ControllerConfig
from wmlib.dream import DreamConfig, DreamEnv, DreamModel, DreamVectorEnv, dream_returns
from wmlib.controller import batched_controller
from wmlib.errors import WMError
from wmlib.mdnrnn import MDNRNN, MDNRNNConfig
from wmlib.vae import ConvVAE, VAEConfig

from .helpers import ROOT

DOOM_M = MDNRNNConfig(z_size=64, action_size=1, hidden_size=512, restart_input=True, done_head=True)


def make_weights(folder, done_bias=None, m_config=DOOM_M, env="doom", frames=5):
    torch.manual_seed(0)
    vae, m = ConvVAE(VAEConfig(z_size=m_config.z_size)), MDNRNN(m_config)
    if done_bias is not None:
        with torch.no_grad():
            m.head.bias[-1] = done_bias
    save_model(vae, folder, "vae", env)
    save_model(m, folder, "mdnrnn", env)
    rng = np.random.default_rng(0)
    save_npz(folder / "initial_z.npz", mu=rng.normal(size=(frames, m_config.z_size)).astype(np.float32),
             logvar=np.full((frames, m_config.z_size), -3, np.float32))
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("dream"), done_bias=-2.0)


def test_check_env_passes_on_the_shipped_weights():
    """The issue's check: the dream built from pretrained/doom (its trained M, done head and recorded starts)."""
    env = gym.make("wmlib/Dream-v0", weights=str(ROOT / "pretrained" / "doom"), tau=1.15, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64 + 512 + 512,) and obs.dtype == np.float32
    assert env.render().shape == (64, 64, 3)


def test_check_env_passes(weights):
    env = gym.make("wmlib/Dream-v0", weights=weights, tau=1.15, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64 + 512 + 512,) and obs.dtype == np.float32
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_same_seed_same_dream(weights):
    env = DreamEnv(weights, tau=1.15)
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=3)
        seq = [obs]
        for t in range(20):
            obs, *_ = env.step(np.array([np.sin(t)], np.float32))
            seq.append(obs)
        runs.append(np.stack(seq))
    assert np.array_equal(runs[0], runs[1])


def test_done_threshold_and_reward(tmp_path):
    always = DreamEnv(make_weights(tmp_path / "a", done_bias=20.0))
    always.reset(seed=0)
    _, r, terminated, truncated, info = always.step(np.zeros(1, np.float32))
    assert terminated and not truncated and r == 1.0 and info["p_done"] > 0.5
    never = DreamEnv(make_weights(tmp_path / "n", done_bias=-20.0), max_steps=7)
    never.reset(seed=0)
    for t in range(7):
        _, r, terminated, truncated, _ = never.step(np.zeros(1, np.float32))
    assert truncated and not terminated


def test_bernoulli_done_mode(tmp_path):
    env = DreamEnv(make_weights(tmp_path / "b", done_bias=0.0), done_mode="bernoulli", max_steps=2100)
    lengths = []
    for s in range(30):
        env.reset(seed=s)
        t, done = 0, False
        while not done:
            _, _, term, trunc, _ = env.step(np.zeros(1, np.float32))
            t, done = t + 1, term or trunc
        lengths.append(t)
    assert 1 <= np.mean(lengths) < 20  # p(done) near 0.5 ends episodes within a few steps


def test_vector_env_matches_spaces_and_autoresets(tmp_path):
    venv = DreamVectorEnv(make_weights(tmp_path / "v", done_bias=-20.0), num_envs=6, max_steps=3)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (6, 1088) and venv.observation_space.contains(obs)
    for t in range(3):
        obs, r, term, trunc, _ = venv.step(venv.action_space.sample())
    assert trunc.all() and not term.any() and (r == 1).all()
    first = obs.copy()
    obs, r, term, trunc, _ = venv.step(venv.action_space.sample())  # the autoreset step
    assert (r == 0).all() and not term.any() and not trunc.any()
    assert np.allclose(obs[:, 64:], 0), "a reset episode starts from a zero LSTM state"
    assert not np.allclose(first[:, 64:], 0)
    obs, r, *_ = venv.step(venv.action_space.sample())
    assert (r == 1).all()


def test_vector_env_terminates_individually(tmp_path):
    venv = DreamVectorEnv(make_weights(tmp_path / "t", done_bias=20.0), num_envs=4)
    venv.reset(seed=0)
    _, r, term, trunc, _ = venv.step(np.zeros((4, 1), np.float32))
    assert term.all() and (r == 1).all()
    _, r, term, _, _ = venv.step(np.zeros((4, 1), np.float32))
    assert (r == 0).all() and not term.any()


@pytest.mark.parametrize("kind", KINDS)
def test_batched_controller_equals_one_by_one(kind):
    z, h, a = (64, 512, 1) if kind == "zch" else (32, 256, 3)
    cfg = ControllerConfig(kind=kind, z_size=z, rnn_hidden=h, action_size=a)
    c = Controller(cfg)
    params = np.random.default_rng(1).normal(0, 0.3, (7, c.num_params))
    x = torch.randn(7, cfg.input_size)
    one_by_one = torch.cat([c.set_flat(params[i])(x[i:i + 1]) for i in range(7)])
    batched = batched_controller(cfg, torch.as_tensor(params, dtype=torch.float32), x)
    assert torch.allclose(one_by_one, batched, atol=1e-5)


def test_dream_returns_shapes_and_seeds(weights):
    model = DreamModel(weights, "doom")
    cfg = ControllerConfig(kind="zch", z_size=64, rnn_hidden=512, action_size=1)
    sols = np.random.default_rng(0).normal(0, 0.1, (5, 1088))
    a = dream_returns(model, cfg, sols, rollouts=3, dream=DreamConfig(tau=1.15, max_steps=60), seed=11)
    b = dream_returns(model, cfg, sols, rollouts=3, dream=DreamConfig(tau=1.15, max_steps=60), seed=11)
    assert a.shape == (5, 3) and np.array_equal(a, b)
    assert ((a >= 1) & (a <= 60)).all()


def test_dream_returns_respect_done(tmp_path):
    cfg = ControllerConfig(kind="zch", z_size=64, rnn_hidden=512, action_size=1)
    sols = np.zeros((2, 1088))
    dies = DreamModel(make_weights(tmp_path / "d", done_bias=20.0), "doom")
    assert (dream_returns(dies, cfg, sols, rollouts=4, dream=DreamConfig(tau=1.0, max_steps=50), seed=0) == 1).all()
    lives = DreamModel(make_weights(tmp_path / "l", done_bias=-20.0), "doom")
    assert (dream_returns(lives, cfg, sols, rollouts=4, dream=DreamConfig(tau=1.0, max_steps=50), seed=0) == 50).all()


# ---- bad input ------------------------------------------------------------------------------------

def test_bad_tau(weights):
    for tau in (0, -1.0, float("nan")):
        with pytest.raises(WMError, match="tau"):
            DreamEnv(weights, tau=tau)


def test_doom_dream_needs_a_done_head(tmp_path):
    car_m = MDNRNNConfig(z_size=64, action_size=1, hidden_size=64)  # no done head, like CarRacing's M
    w = make_weights(tmp_path / "nodone", m_config=car_m, env="doom")
    with pytest.raises(WMError, match="done head"):
        DreamEnv(w, env="doom")


def test_carracing_weights_in_a_doom_dream(tmp_path):
    w = make_weights(tmp_path / "car", m_config=MDNRNNConfig(), env="carracing")
    with pytest.raises(WMError, match="carracing"):
        DreamEnv(w, env="doom")


def test_missing_initial_z(tmp_path, weights):
    import shutil
    w = tmp_path / "w"
    shutil.copytree(weights, w)
    (w / "initial_z.npz").unlink()
    with pytest.raises(WMError, match="initial"):
        DreamEnv(w)


def test_missing_weights_dir(tmp_path):
    with pytest.raises(WMError, match="does not exist"):
        gym.make("wmlib/Dream-v0", weights=tmp_path / "nope")


def test_dream_check_dream_only(weights):
    """real=False plays only the dream half, with the same seeds as the full check's dream half."""
    from wmlib.studies.dreamcheck import dream_check, dream_check_markdown, dream_survival

    dream = DreamConfig(tau=1.15, max_steps=40)
    res = dream_check(weights, episodes=3, dream=dream, seed=4, policies=("noop", "held_random"),
                      real=False, progress=False)
    model = DreamModel(weights, "doom")
    for k, name in enumerate(("noop", "held_random")):
        row = res["policies"][name]
        assert "real_mean" not in row
        assert row["dream_mean"] == dream_survival(model, name, 3, dream=dream, seed=4 + k).mean()
    assert dream_check_markdown(res).count("not run") == 2
