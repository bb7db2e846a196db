"""Batched real rollouts: several envs per worker, V, M and C as one batch, same episodes as one by one."""
import numpy as np
import pytest
import torch

from wmlib.agent import load_agent
from wmlib.checkpoint import save_model
from wmlib.controller import Controller, ControllerConfig
from wmlib.envs import make_env
from wmlib.mdnrnn import MDNRNN, MDNRNNConfig
from wmlib.rollout import RolloutTask, group_size, rollout, rollout_many, run_rollouts
from wmlib.vae import ConvVAE, VAEConfig


@pytest.fixture(scope="module")
def carracing_weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    save_model(ConvVAE(VAEConfig(z_size=32)), d, "vae", "carracing")
    save_model(MDNRNN(MDNRNNConfig(z_size=32, action_size=3, hidden_size=256)), d, "mdnrnn", "carracing")
    c = Controller(ControllerConfig(kind="zh"))
    c.set_flat(np.random.default_rng(0).normal(0, 0.5, c.num_params))
    save_model(c, d, "controller", "carracing")
    return d


def test_batched_episodes_equal_one_by_one(carracing_weights):
    agent = load_agent(carracing_weights, "carracing")
    seeds = [11, 12, 13]
    single = [rollout(make_env("carracing", max_steps=40), agent, s) for s in seeds]
    envs = [make_env("carracing", max_steps=40) for _ in seeds]
    totals, steps = rollout_many(envs, agent, seeds)
    assert steps.tolist() == [s for _, s in single] == [40, 40, 40]
    np.testing.assert_allclose(totals, [r for r, _ in single], atol=1e-3)


def test_one_controller_per_episode(carracing_weights):
    agent = load_agent(carracing_weights, "carracing")
    rng = np.random.default_rng(1)
    params = rng.normal(0, 0.5, (2, agent.controller.num_params))
    envs = [make_env("carracing", max_steps=30) for _ in range(2)]
    totals, _ = rollout_many(envs, agent, [5, 5], params=params)
    for p, total in zip(params, totals):
        agent.controller.set_flat(p)
        ret, _ = rollout(make_env("carracing", max_steps=30), agent, 5)
        assert ret == pytest.approx(total, abs=1e-3)
    assert totals[0] != pytest.approx(totals[1], abs=1e-3)  # the two controllers really differ


def test_run_rollouts_groups_and_keeps_order(carracing_weights):
    ccfg = ControllerConfig(kind="zh").__dict__
    rng = np.random.default_rng(2)
    params = rng.normal(0, 0.5, (5, Controller(ControllerConfig()).num_params))
    tasks = [RolloutTask("carracing", str(carracing_weights), 100 + i, controller=ccfg, params=params[i], max_steps=25)
             for i in range(5)]
    batched = run_rollouts(tasks, workers=1, progress=False, envs_per_worker=3)
    alone = run_rollouts(tasks, workers=1, progress=False, envs_per_worker=1)
    np.testing.assert_allclose(batched, alone, atol=1e-3)
    assert batched[:, 1].tolist() == [25] * 5
    assert group_size(64, 2, 8) == 8 and group_size(6, 2, 8) == 3 and group_size(1, 2, 8) == 1


def test_agent_rejects_bad_batches(carracing_weights):
    agent = load_agent(carracing_weights, "carracing")
    with pytest.raises(ValueError, match="params must have shape"):
        agent.reset(2, [1, 2], np.zeros((3, 5)))
    with pytest.raises(ValueError, match="2 seeds for a batch of 3"):
        agent.reset(3, [1, 2])
    agent.reset(2, [1, 2])
    with pytest.raises(ValueError, match="1 frames for 2 episodes"):
        agent.act(np.zeros((1, 64, 64, 3), np.uint8))
