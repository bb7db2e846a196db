"""Batched real rollouts: several envs per worker, V, M and C as one batch, same episodes as one by one."""
import numpy as np
import pytest
import torch

from wmlib.agent import load_agent
from wmlib.checkpoint import save_model
from wmlib.controller import Controller, ControllerConfig
from wmlib.envs import make_env
from wmlib.mdnrnn import MDNRNN, MDNRNNConfig
from wmlib.rollout import RolloutTask, Stall, group_size, rollout, rollout_many, run_rollouts
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


class ScriptedRewards:
    """A stand-in game: blank frames, and rewards from a script (a new tile pays +3, else -0.1)."""

    def __init__(self, rewards):
        self.rewards = list(rewards)

    def reset(self, seed=None):
        self.t = 0
        return np.zeros((64, 64, 3), np.uint8), {}

    def step(self, action):
        r = self.rewards[self.t]
        self.t += 1
        return np.zeros((64, 64, 3), np.uint8), r, False, self.t >= len(self.rewards), {}


def test_stall_ends_training_episodes_without_progress(carracing_weights):
    agent = load_agent(carracing_weights, "carracing")
    stuck = [3.0] * 5 + [-0.1] * 95  # reaches 5 tiles, then never another
    driving = ([3.0] + [-0.1] * 9) * 10  # a new tile every 10 steps
    full, full_steps = rollout_many([ScriptedRewards(stuck), ScriptedRewards(driving)], agent, [1, 2])
    cut, cut_steps = rollout_many([ScriptedRewards(stuck), ScriptedRewards(driving)], agent, [1, 2],
                                  stall=Stall(steps=20, episode_steps=100))
    assert full_steps.tolist() == [100, 100]
    assert cut_steps.tolist() == [25, 100]  # 5 tiles, then 20 steps without one; the driving car is not cut
    # the cut episode is scored as if it had gone on without a tile to the end: here exactly the full score
    np.testing.assert_allclose(cut, full, atol=1e-9)
    short, short_steps = rollout_many([ScriptedRewards(driving)], agent, [2], stall=Stall(steps=9, episode_steps=100))
    assert short_steps.tolist() == [10] and short[0] == pytest.approx(3.0 - 0.1 * 99)


def test_stall_steps_travel_with_the_tasks(carracing_weights):
    ccfg = ControllerConfig(kind="zh").__dict__
    params = np.zeros(Controller(ControllerConfig()).num_params)  # C = 0: gas 0.5 straight ahead, off the road
    plain = RolloutTask("carracing", str(carracing_weights), 7, controller=ccfg, params=params, max_steps=300)
    cut = RolloutTask("carracing", str(carracing_weights), 7, controller=ccfg, params=params, max_steps=300,
                      stall_steps=20)
    assert plain.batch_key() != cut.batch_key()  # never played in one batch
    res = run_rollouts([plain, cut], workers=1, progress=False)
    assert res[1, 1] < res[0, 1] - 100, res  # the car that has left the road is stopped early
