"""What chapters 8 (the Doom dream) and 9 (cheating inside it) of the book share.

Both chapters load the same (shipped) Doom weights, keep the results they compute themselves in the same
folder (so that one chapter reuses what the other computed), train the same small controllers in
the dream when the weights do not ship them, count fireballs the same way and play real episodes
the same way, and play dream episodes the same way. Each chapter keeps its own sizes (chapter_sizes in
wmlib.run.profiles) and passes what is needed here explicitly:

    WEIGHTS, LIVE = open_weights(PROFILE)  # shipped_weights("doom") and live_dir, and what they print
    SWEEP = chapter_sizes("doom_sweep", PROFILE)
    SWEEP_DIR = sweep_dir(LIVE, SWEEP, SIZES["max_steps"])
    live_sweep(WEIGHTS, [1.15], SWEEP, TAU, SIZES["max_steps"], LIVE, DEVICE)

The folder names below are part of the cache: change one and the chapters compute their results again.
"""
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import file_digest
from ..cmaes import CMAESConfig
from ..collect import play_episode
from ..dream import DreamConfig
from ..run.profiles import RunConfig, get_config
from ..studies.dreamcheck import controller_in_dream  # noqa: F401  (re-exported for chapter 9)
from ..studies.tausweep import tau_sweep
from .notebook import repo_root, shipped_weights, shown_path

# The weights and the folder of results computed from them


SHIPPED_RESULTS = ("model_card.json", "dream_check.json", "tau_sweep.json", "tau_controllers", "round0")
# each as open_weights names it to the reader
_RESULT_NAMES = {"model_card.json": "model card", "dream_check.json": "dream check", "tau_sweep.json": "tau sweep",
                 "tau_controllers": "tau sweep's controllers", "round0": "round 0"}


def open_weights(profile: str) -> tuple[Path, Path]:
    """(weights, live folder) for a Doom chapter: shipped_weights("doom") (pretrained/doom, or the folder in
    WMLIB_DOOM_WEIGHTS) and live_dir under the repository root (the notebook folder's parent when it holds
    wmlib/, else the current folder, e.g. /content on Colab). Prints where the weights are and which of the
    longer experiments' results they ship; raises WMError naming the fix when there are none.

    Introduced in chapter 8.
    """
    root = repo_root()
    weights = shipped_weights("doom")
    print(f"weights: {shown_path(weights, root)}")
    have = [_RESULT_NAMES[name] for name in SHIPPED_RESULTS if (weights / name).exists()]
    missing = [_RESULT_NAMES[name] for name in SHIPPED_RESULTS if not (weights / name).exists()]
    print(f"shipped with the weights: {', '.join(have) or 'none of the longer experiments'}"
          + (f"; not shipped, so computed here when needed: {', '.join(missing)}" if missing else ""))
    # Results the chapter computes itself (when the weights do not ship them), per profile and per V and M
    return weights, live_dir(root, weights, profile)


def live_dir(root: Path, weights: Path, profile: str) -> Path:
    """The folder for the results the chapters compute themselves (when the weights do not ship them).

    One per profile and per V and M (a digest of their weight files), so that chapters 8 and 9 share
    them, a rerun is instant, and other weights never reuse them.
    """
    digest = file_digest(weights / "mdnrnn.safetensors")[:8] + file_digest(weights / "vae.safetensors")[:8]
    return root / "runs" / "book-doom-dream" / f"{profile}-{digest}"


# The small temperature sweep: one controller per tau, trained in the dream, scored in the dream and the game

def sweep_config(sweep: dict, tau: float, max_steps: int) -> RunConfig:
    """The small run configuration of the controllers the chapters train in the dream themselves."""
    cfg = get_config("doom", "smoke")  # Doom's V, M and C shapes; the CMA-ES sizes are set here
    cfg.cmaes = CMAESConfig(popsize=sweep["popsize"], rollouts=sweep["rollouts"], generations=sweep["generations"],
                            eval_every=0, where="dream", workers=1)
    cfg.dream = DreamConfig(tau=tau, max_steps=max_steps)
    return cfg


def sweep_dir(live: Path, sweep: dict, max_steps: int) -> Path:
    """Where the sweep of these sizes lives under the live folder; tau X's controller is in its tau_X/. Chapter 8."""
    return live / "tau_sweep-{popsize}x{rollouts}x{generations}-{episodes}-{steps}".format(**sweep, steps=max_steps)


def live_sweep(weights: Path, taus: list[float], sweep: dict, tau: float, max_steps: int, live: Path,
               device: str) -> dict:
    """wmlib's tau sweep at the chapters' small sizes: one controller per tau in `taus`, scored in the
    dream and the game. A tau already in the sweep's folder is read back, not trained again.

    Introduced in chapter 8.
    """
    return tau_sweep(weights, taus, sweep_config(sweep, tau, max_steps), out=sweep_dir(live, sweep, max_steps),
                     episodes=sweep["episodes"], seed=0, device=device, workers=1, log=lambda *_: None,
                     progress=False)


# Fireballs, real episodes and dream episodes


def fireball_mask(frames) -> np.ndarray:
    """True where a pixel of uint8 RGB frames (..., H, W, 3) is bright yellow: red above 150, green above
    120 and red at least 40 above blue. Fireballs are; walls, floor and monsters are darker or redder.

    Introduced in chapter 9.
    """
    f = np.asarray(frames, dtype=np.int16)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    return (r > 150) & (g > 120) & (r - b > 40)


def fireball_pixels(frames) -> np.ndarray:
    """Fireball pixels (fireball_mask) per frame: frames (..., H, W, 3) -> counts (...). Chapter 8."""
    return fireball_mask(frames).sum(axis=(-1, -2))


def play_real(env, agent, seed: int, max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One real episode of `agent` (a wmlib.agent.Agent) in `env`: the T frames it acted on (T, 64, 64, 3),
    one per action, and its actions (T,). The game's observation after the last action is left out: after
    a death ViZDoom returns a black screen, which nobody saw. max_steps (None: no limit) ends it early.

    Introduced in chapter 8.
    """
    agent.reset(1, seed)
    ep = play_episode(env, lambda frame: agent.act(frame[None])[0], seed, max_steps or None, keep_frames=True)
    return ep["obs"][:-1], ep["action"][:, 0].astype(np.float64)


def c_policy(controller):
    """A controller as the policy of one gymnasium environment (chapter 8): observation (d,) -> action (1,)."""
    device = next(controller.parameters()).device

    @torch.no_grad()
    def act(obs):
        return controller(torch.as_tensor(obs, device=device)[None])[0].cpu().numpy()
    return act


def play_dream(env, policy, seed: int, keep_frames: int):
    """One episode of `policy` in a dream made with gymnasium.make("wmlib/Dream-v0", ...) (chapter 8).

    Returns its first keep_frames frames, p(done) and the action at each step, and whether M ended it
    (terminated) rather than the step limit. env.render() would draw every step on its own; V draws the
    codes much faster in one batch at the end.
    """
    obs, _ = env.reset(seed=seed)
    dream = env.unwrapped  # the DreamEnv under gymnasium's checking wrappers: its code z is dream.z
    codes, p_done, actions = [dream.z], [], []
    while True:
        a = policy(obs)
        obs, _, terminated, truncated, info = env.step(a)
        codes.append(dream.z)
        p_done.append(info["p_done"])
        actions.append(float(a[0]))
        if terminated or truncated:
            frames = dream.model.decode(torch.cat(codes[:keep_frames]))
            return frames, np.array(p_done), np.array(actions), terminated


# Rounds of the iterative procedure (chapter 9): pretrained/doom/roundK holds round K's M, C and first frames;
# every round shares V with pretrained/doom, so the round's folder ships no V of its own.

_ROUND_FILES = ("mdnrnn.safetensors", "mdnrnn.json", "controller.safetensors", "controller.json", "initial_z.npz")


def round_weights(weights: Path, name: str, live: Path) -> Path | None:
    """A weights folder for round `name` of the iterative procedure behind `weights` (e.g. "round0" of
    pretrained/doom): V of `weights` with the M, C and first frames of weights/name, linked (or, where
    links fail, copied) into live/name-weights, so that load_agent and DreamModel read it like any weights
    folder. A round folder that holds its own V is returned as it is; None when weights/name has no M and C.

    Introduced in chapter 9.
    """
    import shutil

    src = Path(weights) / name
    if not all((src / f).exists() for f in _ROUND_FILES):
        return None
    if (src / "vae.safetensors").exists():
        return src
    out = Path(live) / f"{name}-weights"
    out.mkdir(parents=True, exist_ok=True)
    pairs = [(Path(weights) / f, out / f) for f in ("vae.safetensors", "vae.json")]
    pairs += [(src / f, out / f) for f in _ROUND_FILES + ("model_card.json",) if (src / f).exists()]
    for source, link in pairs:  # made again every time: the links follow the files they name
        link.unlink(missing_ok=True)
        try:
            link.symlink_to(source.resolve())
        except OSError:
            shutil.copy2(source, link)
    return out


@torch.no_grad()
def dream_along(model, first_frame, actions, n: int, *, dream, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """n dreams of M along a recorded episode, one batch: each starts from a code of the episode's first real
    frame (drawn from V's posterior) and takes the episode's recorded actions, whatever M dreams. model: a
    DreamModel made with load_vae=True. Returns the codes (n, T + 1, z_size) and p(done) (n, T); a dream goes
    on after p(done) first passes 0.5, so that it can be compared with the episode step by step.

    Introduced in chapter 9.
    """
    from ..vae import ConvVAE, frames_to_tensor

    gen = torch.Generator(device=model.device).manual_seed(seed)
    mu, logvar = model.vae.encode(frames_to_tensor(np.asarray(first_frame)[None], model.device))
    z = ConvVAE.sample(mu.expand(n, -1), logvar.expand(n, -1), gen)
    state = model.mdnrnn.initial_state(n, model.device)
    restart = torch.ones(n, device=model.device)
    codes, p_done = [z], []
    for a in np.asarray(actions, dtype=np.float32):
        action = torch.full((n, model.action_size), float(a), device=model.device)
        z, state, _, p = model.step(z, action, restart, state, dream=dream, generator=gen)
        restart = torch.zeros_like(restart)
        codes.append(z)
        p_done.append(p)
    return torch.stack(codes, 1), torch.stack(p_done, 1).cpu().numpy()
