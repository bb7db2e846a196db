"""The two real environments, seen the way V and C see them.

Both wrappers turn observations into 64x64x3 uint8 frames and take the controller's output in
[-1, 1] as their action, mapping it to the environment's own action exactly as the paper did:

- CarRacing-v3: keep the top 84 of 96 rows (drops the dashboard), resize to 64x64. Action
  (steer, gas, brake) = (a0, (a1 + 1) / 2, clip(a2, 0, 1)). The game runs as
  wmlib/FastCarRacing-v3 (fast_carracing.py): the same pixels, rewards and episodes, 3x faster.
- VizdoomTakeCover-v1: keep the top 200 of 240 rows (the authors kept 400 of 480), resize to 64x64.
  a < -1/3 moves left, a > 1/3 moves right, otherwise no-op; the Discrete(3) index of each button
  is read from the game at run time, not assumed. Episodes are capped at 2,100 steps.
"""
import atexit
import multiprocessing.util
import threading
import weakref

import numpy as np
import gymnasium as gym
from PIL import Image

from .errors import WMError

ENV_NAMES = ("carracing", "doom")
MAX_STEPS = {"carracing": 1000, "doom": 2100}


def check_env_name(name: str) -> str:
    if name not in ENV_NAMES:
        raise WMError(f"unknown environment {name!r}: wmlib knows {', '.join(ENV_NAMES)} "
                      f"(CarRacing-v3 and VizdoomTakeCover-v1); pass --env carracing or --env doom")
    return name


def resize_frame(frame: np.ndarray, rows: int) -> np.ndarray:
    """Keep the top `rows` rows of an HxWx3 uint8 frame and resize it to 64x64x3."""
    img = Image.fromarray(np.ascontiguousarray(frame[:rows]))
    return np.asarray(img.resize((64, 64), Image.BILINEAR), dtype=np.uint8)


def carracing_action(a) -> np.ndarray:
    """Controller output (3,) in [-1, 1] -> CarRacing (steer, gas, brake). Chapter 1."""
    a = np.asarray(a, dtype=np.float32).reshape(3)
    return np.array([a[0], (a[1] + 1.0) / 2.0, np.clip(a[2], 0.0, 1.0)], dtype=np.float32)


def doom_direction(a) -> int:
    """Controller output in [-1, 1] -> -1 (left), 0 (no-op) or +1 (right). Chapter 1."""
    v = float(np.asarray(a, dtype=np.float32).reshape(-1)[0])
    return -1 if v < -1.0 / 3.0 else (1 if v > 1.0 / 3.0 else 0)


class GameFrames(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A real game as V and C see it: 64x64x3 uint8 frames, actions in [-1, 1]^action_size."""
    action_size: int

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_size,), np.float32)

    def frame(self, obs) -> np.ndarray:
        """The game's observation -> a 64x64x3 frame."""
        raise NotImplementedError

    def game_action(self, action):
        """The controller's action -> the game's."""
        raise NotImplementedError

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self.frame(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(self.game_action(action))
        return self.frame(obs), float(reward), terminated, truncated, info


class CarRacingFrames(GameFrames):
    """CarRacing-v3 with 64x64 frames and the controller's [-1, 1]^3 action space."""
    action_size = 3

    def frame(self, obs) -> np.ndarray:
        return resize_frame(obs, 84)

    def game_action(self, action):
        return carracing_action(action)


class DoomFrames(GameFrames):
    """VizdoomTakeCover-v1 with 64x64 frames and a one-dimensional [-1, 1] action."""
    action_size = 1

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._index = self._button_indices(env.unwrapped)

    @staticmethod
    def _button_indices(doom) -> dict[int, int]:
        """Map direction (-1, 0, +1) to the Discrete index that presses that button (or none)."""
        from vizdoom import Button
        buttons = list(doom.game.get_available_buttons())
        want = {-1: Button.MOVE_LEFT, 1: Button.MOVE_RIGHT}
        index = {}
        for i, pressed in enumerate(doom.button_map):
            pressed = np.asarray(pressed)
            if not pressed.any():
                index[0] = i
            elif pressed.sum() == 1:
                b = buttons[int(np.argmax(pressed))]
                for d, button in want.items():
                    if b == button:
                        index[d] = i
        if set(index) != {-1, 0, 1}:
            raise RuntimeError(f"VizdoomTakeCover-v1 buttons {buttons} do not offer no-op, left and right")
        return index

    def frame(self, obs) -> np.ndarray:
        return resize_frame(obs["screen"], 200)

    def game_action(self, action):
        return self._index[doom_direction(action)]


def make_env(name: str, max_steps: int | None = None, render_mode: str | None = None) -> gym.Env:
    """Make a wrapped real environment: 64x64x3 uint8 frames in, controller actions in [-1, 1] out.

    max_steps caps episodes (default: CarRacing's own 1,000, Doom's 2,100 as in the paper).

    Introduced in chapter 1.
    """
    check_env_name(name)
    max_steps = MAX_STEPS[name] if max_steps is None else int(max_steps)
    if max_steps < 1:
        raise WMError(f"max_steps must be at least 1, got {max_steps}")
    if name == "carracing":
        from . import fast_carracing  # noqa: F401  (registers wmlib/FastCarRacing-v3)
        env = gym.make("wmlib/FastCarRacing-v3", render_mode=render_mode or "state_pixels",
                       max_episode_steps=max_steps)
        return CarRacingFrames(env)
    try:
        import vizdoom.gymnasium_wrapper  # noqa: F401  (registers VizdoomTakeCover-v1)
    except ImportError as e:  # pragma: no cover - depends on the install
        raise WMError("the Doom environment needs the `vizdoom` package: pip install vizdoom") from e
    env = DoomFrames(gym.make("VizdoomTakeCover-v1", render_mode=render_mode, max_episode_steps=max_steps))
    _OPEN_GAMES.add(env)
    return env


# ViZDoom runs each game as a process of its own. A Python process that exits normally takes its games
# with it, but one that is killed (a notebook kernel that its client kills at shutdown) leaves them
# running for good. Every Doom env made here is remembered (weakly) so that close_games() can end them
# before that (the book's Doom chapters call it last); it also runs at a normal exit (atexit) and in
# multiprocessing's workers (which exit without running atexit), where it costs nothing.
_OPEN_GAMES: "weakref.WeakSet[gym.Env]" = weakref.WeakSet()
_ENV_CACHE: dict = {}


def cached_env(name: str, max_steps: int | None, index: int = 0) -> gym.Env:
    """This thread's `index`-th env of this kind (a worker keeps its envs between tasks; a Dask worker
    may run several tasks at once, in threads, and two episodes must never share an env)."""
    key = (name, max_steps, index, threading.get_ident())
    if key not in _ENV_CACHE:
        _ENV_CACHE[key] = make_env(name, max_steps=max_steps)
    return _ENV_CACHE[key]


def close_games() -> int:
    """Close every env this process made with make_env that runs a game process (Doom), and forget
    the cached ones; returns how many were closed. Chapters call it at their end; it also runs at exit.

    Introduced in chapter 8.
    """
    n = 0
    for env in list(_OPEN_GAMES):
        try:
            env.close()
            n += 1
        except Exception:  # already closed, or the game died: nothing left to end
            pass
        _OPEN_GAMES.discard(env)
    for key in [k for k, env in _ENV_CACHE.items() if k[0] == "doom"]:
        del _ENV_CACHE[key]
    return n


def close_cached_envs() -> None:
    """Close and forget every env cached_env made in this process, CarRacing's too (a benchmark that must
    time making them again); the Doom games among them end as in close_games."""
    for env in _ENV_CACHE.values():
        try:
            env.close()
        except Exception:  # already closed, or the game died
            pass
        _OPEN_GAMES.discard(env)
    _ENV_CACHE.clear()


atexit.register(close_games)
multiprocessing.util.Finalize(None, close_games, exitpriority=10)
