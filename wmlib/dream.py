"""The dream: M (with V to draw it) as an environment, one episode or thousands in one batch.

A dream episode starts from the (mu, logvar) of a recorded real first frame (initial_z.npz), with a
zero LSTM state and the restart flag set. Each step feeds (z_t, a_t) to M, samples z_{t+1} from its
mixture at temperature tau and, for Doom, ends the episode when M's p(done) exceeds 0.5 (or, with
done_mode="bernoulli", with probability p(done)) or at 2,100 steps. Doom's reward is +1 per step
survived, as in the real game; CarRacing's M predicts no reward, so its dream pays 0.

The controller's observation is what C reads: [z, c, h] for Doom's controller, [z, h] for
CarRacing's (c and h are M's LSTM cell and output *before* it sees this step's action).

- `DreamModel`: the batched core (M, the initial frames, sampling), shared by everything below;
- `DreamConfig`: tau, done_mode and max_steps, checked once, here: everything below takes one;
- `DreamEnv`: a gymnasium.Env (`gymnasium.make("wmlib/Dream-v0", weights=DIR, tau=1.15)`);
- `DreamVectorEnv`: a gymnasium.vector.VectorEnv stepping N dreams in one forward pass of M;
- `dream_returns`: a CMA-ES population (pop x rollouts episodes) in one batch, each episode acted
  on by its own candidate's controller with batched weights.
"""
import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .checkpoint import load_model, read_json
from .controller import READS, Controller, ControllerConfig, batched_controller, controller_input
from .errors import WMError
from .mdnrnn import MDNRNN, MDNRNNConfig, sample_next_z
from .vae import ConvVAE, VAEConfig, tensor_to_frames

DEFAULT_OBS = {"doom": "zch", "carracing": "zh"}
DONE_MODES = ("threshold", "bernoulli")


class DreamConfigError(WMError, ValueError):
    """A bad DreamConfig: a ValueError, as for every config, and a WMError, since its values come straight
    from a user (DreamEnv's and gymnasium.make's keywords, the command line's --tau)."""


@dataclass
class DreamConfig:
    """The dream's settings: temperature tau, how p(done) ends an episode, and the step cap. Chapter 5."""
    tau: float = 1.15  # the paper's best transfer (its table: 0.1 to 1.3)
    done_mode: str = "threshold"  # episode ends when p(done) > 0.5; "bernoulli" samples it
    max_steps: int = 2100  # the paper's cap on a Doom episode

    def __post_init__(self):
        # The one check of the dream's settings: every dream function takes a DreamConfig, so none checks again.
        tau, steps = self.tau, self.max_steps
        if not (isinstance(tau, numbers.Real) and math.isfinite(tau) and tau > 0):
            typed = ("" if isinstance(tau, numbers.Real)
                     else f" (DreamConfig.tau must be float, not {type(tau).__name__})")
            raise DreamConfigError(f"the dream's temperature tau must be a number > 0{typed}, got {tau!r}; the paper "
                                   f"used {DreamConfig.tau} (0.1 to 1.3 in its table)")
        if self.done_mode not in DONE_MODES:
            raise DreamConfigError(f"DreamConfig.done_mode must be one of {', '.join(DONE_MODES)}, got "
                                   f"{self.done_mode!r}")
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise DreamConfigError(f"DreamConfig.max_steps must be a whole number >= 1, got {steps!r}; the paper "
                                   f"capped Doom at {DreamConfig.max_steps}")


def dream_config(config: DreamConfig | None = None, **fields) -> DreamConfig:
    """`config` (default: DreamConfig()) with the fields given as not None replaced, checked as a new DreamConfig."""
    if config is not None and not isinstance(config, DreamConfig):
        raise WMError(f"config must be a DreamConfig, got {config!r}; pass tau, done_mode and max_steps as keywords")
    return dataclasses.replace(config or DreamConfig(), **{k: v for k, v in fields.items() if v is not None})


def load_initial_z(path: Path, z_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The recorded first frames (mu, logvar), each (N, z_size), checked: the dream's reset draws from them."""
    path = Path(path)
    if not path.exists():
        raise WMError(f"missing initial-z file {path}: the dream starts from recorded first frames. It is "
                      "written when M's training data is encoded: rerun `python -m wmlib train-mdnrnn` "
                      "for this run directory, or copy initial_z.npz from it")
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, logvar = f["mu"], f["logvar"]
    except Exception as e:
        raise WMError(f"{path} is corrupt ({e}); rerun `python -m wmlib train-mdnrnn` to rewrite it") from e
    if mu.ndim != 2 or mu.shape[1] != z_size or mu.shape != logvar.shape or len(mu) == 0:
        raise WMError(f"{path} holds first frames of shape {mu.shape}, but M expects z of size "
                      f"{z_size}; it belongs to another V: rewrite it with train-mdnrnn")
    if not (np.isfinite(mu).all() and np.isfinite(logvar).all()):  # every dream would start from NaN
        raise WMError(f"{path} holds NaN or infinite first frames (V had diverged when it encoded them); retrain "
                      "V, then rerun `python -m wmlib train-mdnrnn` to rewrite it")
    return mu.astype(np.float32), logvar.astype(np.float32)


class DreamModel:
    """M plus the recorded first frames: batched reset and step, on CPU or GPU. Chapter 5."""

    def __init__(self, weights, env: str | None = None, device="cpu", *, obs: str | None = None,
                 load_vae: bool = False):
        """obs: what the dream shows C, "zch", "zh" or "z", or the kind of C that will read it (default: the
        env's, DEFAULT_OBS)."""
        weights = Path(weights)
        if not weights.is_dir():
            raise WMError(f"weights directory {weights} does not exist; pass a run directory or a shipped "
                          "weights directory (e.g. pretrained/doom)")
        trained_for = read_json(weights / "mdnrnn.json").get("env") if (weights / "mdnrnn.json").exists() else None
        if env is None:
            env = trained_for
        elif env == "doom" and trained_for not in (None, "doom"):  # load_model's advice (--env) does not apply
            raise WMError(f"{weights} holds {trained_for} weights, but the dream runs Doom: its M must predict when "
                          "the episode ends (a done head), which only a Doom M has. Use weights trained with "
                          "--env doom (e.g. pretrained/doom); CarRacing's C is trained in the real game")
        self.env = env
        self.device = torch.device(device)
        self.mdnrnn, _ = load_model(MDNRNN, MDNRNNConfig, weights, "mdnrnn", env, self.device)
        if env == "doom" and not self.mdnrnn.config.done_head:
            raise WMError(f"the M in {weights} has no done head (is it a CarRacing M?): a Doom dream needs M to "
                          "predict when the episode ends; use weights trained with --env doom")
        mu, logvar = load_initial_z(weights / "initial_z.npz", self.mdnrnn.config.z_size)
        self.init_mu = torch.as_tensor(mu, dtype=torch.float32, device=self.device)
        self.init_logvar = torch.as_tensor(logvar, dtype=torch.float32, device=self.device)
        obs = obs or DEFAULT_OBS.get(env, "zh")
        if obs not in READS:
            raise WMError(f"unknown dream observation {obs!r}: choose zch, zh or z, or a controller kind "
                          f"({', '.join(READS)})")
        self.obs_kind = READS[obs]
        self.obs_size = self.controller_config().input_size
        self.vae = load_model(ConvVAE, VAEConfig, weights, "vae", env, self.device)[0] if load_vae else None

    @property
    def z_size(self) -> int:
        return self.mdnrnn.config.z_size

    @property
    def action_size(self) -> int:
        return self.mdnrnn.config.action_size

    def controller_config(self, kind: str | None = None) -> ControllerConfig:
        """The shape of a C that acts in this dream: `kind` (default: the one reading this dream's observation)."""
        c = self.mdnrnn.config
        return ControllerConfig(kind=kind or self.obs_kind, z_size=c.z_size, rnn_hidden=c.hidden_size,
                                action_size=c.action_size)

    def initial(self, n: int, generator: torch.Generator, frames: torch.Tensor | None = None):
        """n starting latents (from random recorded first frames, or the given indices) and zero states."""
        if frames is None:
            frames = torch.randint(len(self.init_mu), (n,), generator=generator, device=self.device)
        z = ConvVAE.sample(self.init_mu[frames], self.init_logvar[frames], generator)
        return z, self.mdnrnn.initial_state(n, self.device)

    def observe(self, z, state) -> torch.Tensor:
        """What C sees: z with M's LSTM output and cell from state, as this dream's obs_kind has it."""
        return controller_input(self.obs_kind, z, state[0][0], state[1][0])

    @torch.no_grad()
    def step(self, z, action, restart, state, *, dream: DreamConfig, generator: torch.Generator):
        """One batched dream step -> (next z, next state, done (bool), p(done))."""
        out = self.mdnrnn.step(z, action, restart, state)
        next_z = sample_next_z(out.logpi[:, 0], out.mu[:, 0], out.logsigma[:, 0], dream.tau, generator)
        if out.done_logit is None:
            p = torch.zeros(len(z), device=self.device)
        else:
            p = torch.sigmoid(out.done_logit[:, 0])
        if dream.done_mode == "bernoulli":
            done = torch.rand(p.shape, generator=generator, device=self.device) < p
        else:
            done = p > 0.5
        return next_z, out.state, done, p

    @torch.no_grad()
    def decode(self, z) -> np.ndarray:
        if self.vae is None:
            raise RuntimeError("this DreamModel was made without V (load_vae=False)")
        return tensor_to_frames(self.vae.decode(z))


class DreamEnv(gym.Env):
    """One dream episode at a time, with gymnasium's API. Reward +1 per step for Doom.

    tau, done_mode and max_steps, where given, replace those of `config` (default: DreamConfig()).

    Introduced in chapter 8.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(self, weights, config: DreamConfig | None = None, *, tau: float | None = None,
                 done_mode: str | None = None, max_steps: int | None = None, render_mode: str | None = None,
                 device="cpu", env: str | None = None, obs: str | None = None):
        self.dream = dream_config(config, tau=tau, done_mode=done_mode, max_steps=max_steps)
        if render_mode not in (None, "rgb_array"):
            raise WMError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.model = DreamModel(weights, env, device, obs=obs, load_vae=render_mode == "rgb_array")
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.model.obs_size,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.model.action_size,), np.float32)
        self.reward_per_step = 1.0 if self.model.env == "doom" else 0.0
        self._gen = torch.Generator(device=self.model.device)

    def _obs(self) -> np.ndarray:
        return self.model.observe(self.z, self.state)[0].cpu().numpy().astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._gen.manual_seed(int(self.np_random.integers(2**62)))
        self.z, self.state = self.model.initial(1, self._gen)
        self.restart = torch.ones(1, device=self.model.device)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        a = torch.as_tensor(np.asarray(action, np.float32).reshape(1, -1), device=self.model.device).clamp(-1, 1)
        self.z, self.state, done, p = self.model.step(self.z, a, self.restart, self.state, dream=self.dream,
                                                     generator=self._gen)
        self.restart = torch.zeros_like(self.restart)
        self.t += 1
        terminated = bool(done[0])
        truncated = not terminated and self.t >= self.dream.max_steps
        return self._obs(), self.reward_per_step, terminated, truncated, {"p_done": float(p[0])}

    def render(self):
        if self.render_mode == "rgb_array":
            return self.model.decode(self.z)[0]
        return None


class DreamVectorEnv(VectorEnv):
    """N dreams stepped together: one forward pass of M per step for the whole batch.

    Autoreset follows gymnasium's default (next step): the step after an episode ends resets that
    sub-environment, ignores its action and returns its first observation with reward 0. The settings are
    DreamEnv's.

    Introduced in chapter 8.
    """

    def __init__(self, weights, num_envs: int, config: DreamConfig | None = None, *, tau: float | None = None,
                 done_mode: str | None = None, max_steps: int | None = None, device="cpu", env: str | None = None,
                 obs: str | None = None):
        self.dream = dream_config(config, tau=tau, done_mode=done_mode, max_steps=max_steps)
        if int(num_envs) < 1:
            raise WMError(f"num_envs must be at least 1, got {num_envs}")
        self.model = DreamModel(weights, env, device, obs=obs)
        self.num_envs = int(num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (self.model.obs_size,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (self.model.action_size,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.reward_per_step = 1.0 if self.model.env == "doom" else 0.0
        self._gen = torch.Generator(device=self.model.device)
        self._gen.manual_seed(0)

    def _obs(self) -> np.ndarray:
        return self.model.observe(self.z, self.state).cpu().numpy().astype(np.float32)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._gen.manual_seed(int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0] >> 1))
        self.z, self.state = self.model.initial(self.num_envs, self._gen)
        dev = self.model.device
        self.restart = torch.ones(self.num_envs, device=dev)
        self.t = torch.zeros(self.num_envs, dtype=torch.long, device=dev)
        self.needs_reset = torch.zeros(self.num_envs, dtype=torch.bool, device=dev)
        return self._obs(), {}

    def step(self, actions):
        dev = self.model.device
        a = torch.as_tensor(np.asarray(actions, np.float32).reshape(self.num_envs, -1), device=dev).clamp(-1, 1)
        resetting = self.needs_reset
        if resetting.any():  # autoreset: fresh episodes where the last step ended one
            z0, (h0, c0) = self.model.initial(int(resetting.sum()), self._gen)
            self.z[resetting] = z0
            self.state[0][0][resetting] = h0[0]
            self.state[1][0][resetting] = c0[0]
            self.restart[resetting] = 1.0
            self.t[resetting] = 0
        # step every episode (the resetting ones too, their results are discarded below)
        keep_z, keep_state = self.z.clone(), (self.state[0].clone(), self.state[1].clone())
        z, state, done, p = self.model.step(self.z, a, self.restart, self.state, dream=self.dream, generator=self._gen)
        r = resetting.unsqueeze(-1)
        self.z = torch.where(r, keep_z, z)
        self.state = (torch.where(r.unsqueeze(0), keep_state[0], state[0]),
                      torch.where(r.unsqueeze(0), keep_state[1], state[1]))
        self.restart = torch.where(resetting, self.restart, torch.zeros_like(self.restart))
        self.t = torch.where(resetting, self.t, self.t + 1)
        terminated = done & ~resetting
        truncated = ~terminated & ~resetting & (self.t >= self.dream.max_steps)
        rewards = torch.where(resetting, 0.0, self.reward_per_step)
        self.needs_reset = terminated | truncated
        return (self._obs(), rewards.cpu().numpy().astype(np.float64), terminated.cpu().numpy(),
                truncated.cpu().numpy(), {"p_done": p.cpu().numpy()})


@torch.no_grad()
def play_batch(model: DreamModel, act, n: int, *, dream: DreamConfig, generator: torch.Generator,
               start_frames: torch.Tensor | None = None) -> torch.Tensor:
    """Play n dream episodes in one batch; act(obs (m, d), alive indices (m,)) -> actions (m, A).

    Finished episodes drop out of the batch, so late steps cost only what is still alive.
    Returns the steps each episode lasted, (n,).
    """
    z, state = model.initial(n, generator, start_frames)
    alive = torch.arange(n, device=model.device)
    steps = torch.zeros(n, device=model.device)
    restart = torch.ones(n, device=model.device)
    for _ in range(dream.max_steps):
        z, state, done, _ = model.step(z, act(model.observe(z, state), alive), restart, state, dream=dream,
                                       generator=generator)
        steps[alive] += 1
        restart = torch.zeros_like(restart)
        if done.any():
            keep = ~done
            alive, z, restart = alive[keep], z[keep], restart[keep]
            state = (state[0][:, keep], state[1][:, keep])
            if len(alive) == 0:
                break
    return steps


@torch.no_grad()
def dream_returns(model: DreamModel, controller: ControllerConfig, solutions, *, rollouts: int, dream: DreamConfig,
                  seed: int, start_frames: torch.Tensor | None = None) -> np.ndarray:
    """Play rollouts dream episodes with each of the candidates in solutions (pop, P) -> returns (pop, rollouts).

    All pop x rollouts episodes run as one batch; finished episodes drop out of the batch. Rollout r
    of every candidate starts from the same recorded frame (common random numbers).

    Introduced in chapter 8.
    """
    n_params = Controller(controller).num_params  # checked once here, not in every step's batched_controller
    if controller.input_size != model.obs_size or controller.action_size != model.action_size:
        raise WMError(f"a {controller.kind!r} controller reads {controller.input_size} inputs and makes "
                      f"{controller.action_size} actions, but this dream gives {model.obs_size} and takes "
                      f"{model.action_size}; build it as {model.controller_config()} (or another kind that reads "
                      f"{model.obs_kind!r}), e.g. with DreamModel.controller_config()")
    if np.ndim(solutions) != 2 or np.shape(solutions)[1] != n_params:
        raise WMError(f"solutions must have shape (population, {n_params}) for this controller, got "
                      f"{np.shape(solutions)}")
    dev = model.device
    params = torch.as_tensor(np.asarray(solutions), dtype=torch.float32, device=dev)
    pop = params.shape[0]
    n = pop * rollouts
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    if start_frames is None:
        start_frames = torch.randint(len(model.init_mu), (rollouts,), generator=gen, device=dev)
    candidate = torch.arange(n, device=dev) // rollouts
    steps = play_batch(model, lambda obs, alive: batched_controller(controller, params[candidate[alive]], obs),
                       n, dream=dream, generator=gen, start_frames=start_frames.repeat(pop))
    reward = 1.0 if model.env == "doom" else 0.0
    return (steps * reward).view(pop, rollouts).cpu().numpy().astype(np.float64)
