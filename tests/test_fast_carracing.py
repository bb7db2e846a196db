r"""FastCarRacing-v3 must be indistinguishable from gymnasium's CarRacing-v3.

For the same seed and actions, both envs are stepped side by side. At every step the test asserts
that every observation byte, the reward (value and type), terminated, truncated and info are
equal. Every episode starts with the one-second zoom-in animation (the first 50 frames), which
exercises the renderer's small-zoom path.

The sizes are module constants, small enough for CI. Environment variables raise them for a long
check, e.g.:

    FAST_CARRACING_SEEDS=12 FAST_CARRACING_STEPS=1000 FAST_CARRACING_SCRIPT_SEEDS=12 \
    FAST_CARRACING_RGB_STEPS=500 FAST_CARRACING_OPTION_STEPS=1000 \
    nice -n 19 python -m pytest tests/test_fast_carracing.py
"""
import os

import gymnasium
import numpy as np
import pygame
import pytest

from wmlib.fast_carracing import ENV_ID  # importing registers the id

SEEDS = int(os.environ.get("FAST_CARRACING_SEEDS", 4))  # random-action episodes in state_pixels
STEPS = int(os.environ.get("FAST_CARRACING_STEPS", 300))  # steps of each of those episodes
RGB_STEPS = int(os.environ.get("FAST_CARRACING_RGB_STEPS", 100))  # rgb_array episode
OPTION_STEPS = int(os.environ.get("FAST_CARRACING_OPTION_STEPS", 150))  # domain_randomize / discrete
SCRIPT_SEEDS = int(os.environ.get("FAST_CARRACING_SCRIPT_SEEDS", 1))  # tracks for each scripted drive
SCRIPT_LIMIT = 1000  # scripted episodes run until they end, at most this many steps


def make_pair(**kwargs):
    return gymnasium.make("CarRacing-v3", **kwargs), gymnasium.make(ENV_ID, **kwargs)


@pytest.fixture(scope="module")
def state_pair():
    """One pair for all state_pixels episodes: resetting to a new seed must rebuild the cached track."""
    ref, fast = make_pair()
    yield ref, fast
    ref.close()
    fast.close()


def assert_same_obs(obs_ref, obs_fast, where):
    assert obs_fast.dtype == obs_ref.dtype and obs_fast.shape == obs_ref.shape, where
    if not np.array_equal(obs_ref, obs_fast):
        diff = np.argwhere((obs_ref != obs_fast).any(axis=-1))
        pytest.fail(f"{where}: {len(diff)} pixels differ, first at (row, col) {diff[0].tolist()}")


def run_both(ref, fast, seed, actions, options=None, render=False):
    """Reset both envs with `seed`, feed both the same actions, and compare everything each step.

    Returns (steps taken, the last step's (reward, terminated, truncated, info)).
    """
    obs_r, info_r = ref.reset(seed=seed, options=options)
    obs_f, info_f = fast.reset(seed=seed, options=options)
    assert_same_obs(obs_r, obs_f, f"seed {seed} reset")
    assert info_f == info_r
    last = None
    steps = 0
    for t, action in enumerate(actions):
        obs_r, rew_r, term_r, trunc_r, info_r = ref.step(action)
        obs_f, rew_f, term_f, trunc_f, info_f = fast.step(action)
        where = f"seed {seed} step {t}"
        assert_same_obs(obs_r, obs_f, where)
        assert rew_f == rew_r and type(rew_f) is type(rew_r), (where, rew_r, rew_f)
        assert (term_f, trunc_f, info_f) == (term_r, trunc_r, info_r), where
        if render:
            assert_same_obs(ref.render(), fast.render(), f"{where} render()")
        steps, last = t + 1, (rew_r, term_r, trunc_r, info_r)
        if term_r or trunc_r:
            break
    return steps, last


def random_actions(seed, n):
    """Continuous actions that drive the car about: brake only now and then, so it gets somewhere."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        steer, gas = rng.uniform(-1, 1), rng.uniform(0, 1)
        brake = rng.uniform(0, 1) if rng.random() < 0.1 else 0.0
        yield np.array([steer, gas, brake], dtype=np.float32)


def to_playfield_edge(t):
    """Coast through the zoom-in, turn right off the track, then drive straight to the playfield edge."""
    steer = 1.0 if 20 <= t < 40 else 0.0
    return np.array([steer, 0.4, 0.0], dtype=np.float32)


def accelerate_brake_skid(t):
    """Full throttle, hard braking, steering while braking (skid marks, ABS bars, gyroscope); repeat."""
    t %= 200
    if t < 70:
        action = [0.0, 1.0, 0.0]
    elif t < 100:
        action = [0.0, 0.0, 1.0]
    elif t < 130:
        action = [-1.0, 0.3, 0.8]
    else:
        action = [1.0, 0.6, 0.0]
    return np.array(action, dtype=np.float32)


def test_registration():
    spec = gymnasium.spec(ENV_ID)
    assert spec.entry_point == "wmlib.fast_carracing:FastCarRacing"
    assert spec.max_episode_steps == 1000 and spec.reward_threshold == 900
    env = gymnasium.make(ENV_ID, render_mode="rgb_array", lap_complete_percent=0.9,
                         domain_randomize=True, continuous=False)
    assert env.unwrapped.lap_complete_percent == 0.9 and not env.unwrapped.continuous
    env.close()


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_actions(state_pair, seed):
    run_both(*state_pair, seed, random_actions(seed, STEPS))


@pytest.mark.parametrize("seed", range(100, 100 + SCRIPT_SEEDS))
def test_drive_off_track_to_playfield_edge(state_pair, seed):
    # The last frames, with the playfield's edge in view, take the renderer's path for a
    # background polygon that does not cover the whole surface.
    steps, (reward, terminated, truncated, info) = run_both(
        *state_pair, seed, map(to_playfield_edge, range(SCRIPT_LIMIT)))
    assert terminated and reward == -100 and info == {"lap_finished": False}, steps


@pytest.mark.parametrize("seed", range(200, 200 + SCRIPT_SEEDS))
def test_accelerate_brake_skid(state_pair, seed):
    run_both(*state_pair, seed, map(accelerate_brake_skid, range(max(200, STEPS))))


def test_rgb_array_render_mode():
    ref, fast = make_pair(render_mode="rgb_array")
    run_both(ref, fast, 21, random_actions(21, RGB_STEPS), render=True)


def test_domain_randomize():
    ref, fast = make_pair(domain_randomize=True)
    run_both(ref, fast, 31, random_actions(31, OPTION_STEPS))
    # A second episode on the same envs, keeping the colours, then one that draws new ones.
    run_both(ref, fast, 32, random_actions(32, 40), options={"randomize": False})
    run_both(ref, fast, 33, random_actions(33, 40), options={"randomize": True})


def test_discrete_actions():
    ref, fast = make_pair(continuous=False)
    rng = np.random.default_rng(41)
    # Gas more often than the other actions, so that the car moves.
    actions = rng.choice(5, size=OPTION_STEPS, p=[0.1, 0.15, 0.15, 0.5, 0.1])
    run_both(ref, fast, 41, (int(a) for a in actions))


def test_truncation():
    ref, fast = make_pair(max_episode_steps=60)
    steps, (_, terminated, truncated, _) = run_both(ref, fast, 51, random_actions(51, 100))
    assert (steps, terminated, truncated) == (60, False, True)


def test_survives_pygame_quit():
    # pygame.quit() invalidates fonts; the original makes a new one each frame, the fast env must
    # notice that its cached font is dead.
    ref, fast = make_pair()
    ref.reset(seed=61)
    fast.reset(seed=61)
    for t, action in enumerate(random_actions(61, 40)):
        if t in (10, 25):
            pygame.quit()
        out_r, out_f = ref.step(action), fast.step(action)
        assert_same_obs(out_r[0], out_f[0], f"step {t}")
        assert out_f[1:] == out_r[1:]
