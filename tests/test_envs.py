"""The real environments as V and C see them: 64x64x3 uint8 frames, controller actions in [-1, 1]."""
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from wmlib.envs import carracing_action, doom_direction, make_env
from wmlib.errors import WMError


@pytest.fixture(scope="module", params=["carracing", "doom"])
def env(request):
    e = make_env(request.param, max_steps=40)
    yield request.param, e
    e.close()


def test_frames_are_64x64x3_uint8(env):
    name, e = env
    frame, _ = e.reset(seed=1)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert e.observation_space.contains(frame)
    frames = [frame]
    for _ in range(30):
        frame, reward, terminated, truncated, _ = e.step(e.action_space.sample())
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and isinstance(reward, float)
        frames.append(frame)
        if terminated or truncated:
            break
    frames = np.stack(frames)
    assert frames.std() > 5, "frames are blank"
    assert np.abs(np.diff(frames.astype(int), axis=0)).sum() > 0, "the picture never changes"


def test_same_seed_same_frames(env):
    name, e = env
    runs = []
    for _ in range(2):
        f, _ = e.reset(seed=7)
        seq = [f]
        for t in range(10):
            f, *_ = e.step(np.full(e.action_space.shape, 0.5 if t % 2 else -0.5, np.float32))
            seq.append(f)
        runs.append(np.stack(seq))
    assert np.array_equal(runs[0], runs[1])


def test_wrapped_envs_pass_gymnasium_checker(env):
    name, e = env
    check_env(e, skip_render_check=True)


def test_time_limit():
    e = make_env("doom", max_steps=5)
    e.reset(seed=0)
    for t in range(5):
        _, _, terminated, truncated, _ = e.step(np.zeros(1, np.float32))
    assert truncated or terminated
    e.close()


def test_carracing_action_mapping():
    np.testing.assert_allclose(carracing_action([-1, -1, -1]), [-1, 0, 0])
    np.testing.assert_allclose(carracing_action([1, 1, 1]), [1, 1, 1])
    np.testing.assert_allclose(carracing_action([0.3, 0.0, 0.5]), [0.3, 0.5, 0.5])


def test_doom_action_thresholds():
    assert [doom_direction(v) for v in (-1, -0.34, -0.33, 0, 0.33, 0.34, 1)] == [-1, -1, 0, 0, 0, 1, 1]


def test_doom_buttons_read_from_the_game():
    """Pressing 'left' must press MOVE_LEFT, whatever the Discrete index order is."""
    from vizdoom import Button
    e = make_env("doom", max_steps=10)
    e.reset(seed=0)
    game = e.unwrapped.game
    buttons = list(game.get_available_buttons())
    for direction, button in ((-1, Button.MOVE_LEFT), (1, Button.MOVE_RIGHT)):
        pressed = np.asarray(e.unwrapped.button_map[e._index[direction]])
        assert buttons[int(np.argmax(pressed))] == button and pressed.sum() == 1
    assert not np.asarray(e.unwrapped.button_map[e._index[0]]).any()
    e.close()


def test_unknown_env_name():
    with pytest.raises(WMError, match="carracing"):
        make_env("pong")


@pytest.mark.parametrize("name,cap", [("carracing", 1000), ("doom", 2100)])
def test_default_episode_caps(name, cap):
    """Without max_steps, episodes end at the env's own cap: evaluation must not run past it."""
    from wmlib.envs import cached_env as _cached_env
    e = _cached_env(name, None)
    assert e.env._max_episode_steps == cap and e.spec.max_episode_steps == cap


def test_close_games_ends_every_doom_game():
    """ViZDoom runs each game as its own process: close_games ends every one this process made."""
    from wmlib.envs import _ENV_CACHE, cached_env, close_games
    made = make_env("doom")
    cached = cached_env("doom", 50, 7)
    for env in (made, cached):
        env.reset(seed=0)
    games = [env.unwrapped.game for env in (made, cached)]
    assert all(g.is_running() for g in games)
    assert close_games() >= 2
    assert not any(g.is_running() for g in games)
    assert not any(key[:3] == ("doom", 50, 7) for key in _ENV_CACHE)  # keys end with the thread's id


def test_close_cached_envs_forgets_every_env():
    from wmlib.envs import _ENV_CACHE, cached_env, close_cached_envs
    car, doom = cached_env("carracing", 20), cached_env("doom", 20)
    assert cached_env("carracing", 20) is car  # cached
    game = doom.unwrapped.game
    doom.reset(seed=0)
    close_cached_envs()
    assert not _ENV_CACHE and not game.is_running()
    assert cached_env("carracing", 20) is not car  # made again
    close_cached_envs()


def _children(pid: int) -> set:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_doom_game_process_ends_with_python():
    """A process that exits without closing its Doom env (a notebook kernel shut down, a pool worker)
    leaves no game process behind."""
    import subprocess
    import sys
    import time
    code = ("import os, sys; from wmlib.envs import make_env; e = make_env('doom'); e.reset(seed=0); "
            "print(' '.join(str(c) for t in os.listdir('/proc/self/task') "
            "for c in open(f'/proc/self/task/{t}/children').read().split()), flush=True)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert pids, "the Doom env started no game process (did ViZDoom change?)"
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.2)
    alive = [p for p in pids if Path(f"/proc/{p}").exists()
             and "vizdoom" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    assert not alive, f"game processes {alive} outlived the Python process that started them"
