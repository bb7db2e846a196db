"""The stages of a run, each reading and writing one run directory.

    RUN_DIR/run.json                 env, profile, seed and the full configuration
    RUN_DIR/episodes/ep_*.npz        random rollouts (collect)
    RUN_DIR/vae.safetensors|json     V (train-vae); vae.train.pt holds its resumable state
    RUN_DIR/series/                  (mu, logvar) per episode and packed/ memory maps (train-mdnrnn)
    RUN_DIR/initial_z.npz            first-frame (mu, logvar) of every episode: the dream's reset
    RUN_DIR/mdnrnn.safetensors|json  M (train-mdnrnn); mdnrnn.train.pt holds its resumable state
    RUN_DIR/controller.safetensors|json and cmaes/   C and the CMA-ES state (train-controller)
    RUN_DIR/cmaes_iterK/             CMA-ES state of round K of the iterative procedure (iterate)
    RUN_DIR/evaluation.json          the final evaluation (run)
    RUN_DIR/timings.json             wall seconds per stage, summed over interrupted attempts

Every stage can be rerun: finished work is kept, interrupted work continues.
"""
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

from ..checkpoint import load_model, pick_device, read_json, write_json
from ..cmaes import train_cmaes
from ..collect import collect
from ..envs import check_env_name
from ..episodes import clean_partial_files
from ..errors import WMError
from ..parallel import open_executor, resolve_workers
from ..rollout import eval_seed, evaluate, real_returns, train_seed
from ..series import encode_series, pack_series
from ..train_mdnrnn import train_mdnrnn
from ..train_vae import train_vae
from ..vae import ConvVAE, VAEConfig
from .profiles import RunConfig, get_config


def log_err(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def timed(run_dir: Path, stage: str):
    """Add this stage's wall time to RUN_DIR/timings.json (summed over interrupted attempts). Chapter 7."""
    t0 = time.monotonic()
    try:
        yield
    finally:
        path = Path(run_dir) / "timings.json"
        if Path(run_dir).is_dir():
            times = read_json(path) if path.exists() else {}
            times[stage] = round(times.get(stage, 0.0) + time.monotonic() - t0, 1)
            write_json(path, times)


def open_run(run_dir: Path, cfg: RunConfig) -> RunConfig:
    """Create run_dir with run.json, or check that an existing one was made with the same settings. Chapter 3."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "run.json"
    if meta_path.exists():
        old = read_json(meta_path)
        for key in ("env", "profile", "seed"):
            if old.get(key) != getattr(cfg, key):
                raise WMError(f"run directory {run_dir} was made with {key}={old.get(key)!r}, not "
                              f"{getattr(cfg, key)!r}; pass the same --env/--profile/--seed to continue it, "
                              "or choose another --run-dir")
        # Every file is written under a temporary name and renamed into place, so a kill -9 leaves the
        # temporary file behind: episodes/ and series/ are cleaned by their stages, the rest here.
        for d in (run_dir, *run_dir.glob("cmaes*")):
            clean_partial_files(d)
        return cfg
    for p in run_dir.glob(".run.json.*.tmp"):  # a kill while the first command wrote run.json
        p.unlink(missing_ok=True)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise WMError(f"{run_dir} exists and is not a wmlib run directory (no run.json); choose an empty or new "
                      "--run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(meta_path, cfg.to_dict())
    return cfg


def config_for(env: str, profile: str, seed: int, run_dir: Path | None) -> tuple[RunConfig, Path]:
    check_env_name(env)
    cfg = get_config(env, profile, seed)
    run_dir = Path(run_dir) if run_dir else Path("runs") / f"{env}-{profile}"
    return cfg, run_dir


def stage_collect(cfg: RunConfig, run_dir: Path, *, progress=True, executor=None):
    """The run's random rollouts into RUN_DIR/episodes (only the missing ones). Chapter 3."""
    c = cfg.collect
    log_err(f"[collect] {c.episodes} {cfg.env} episodes ({c.policy}) into {run_dir / 'episodes'}")
    collect(cfg.env, run_dir / "episodes", c.episodes, seed=cfg.seed, policy=c.policy, max_steps=c.max_steps,
            min_length=c.min_length, workers=c.workers, executor=executor, progress=progress)


def stage_vae(cfg: RunConfig, run_dir: Path, *, progress=True, device=None):
    """Train the run's V on RUN_DIR/episodes (resumes). Chapter 3."""
    log_err(f"[train-vae] z={cfg.vae.z_size}, {cfg.vae_train.epochs} epochs")
    train_vae(run_dir / "episodes", run_dir, cfg.env, config=cfg.vae, train=cfg.vae_train, seed=cfg.seed,
              device=device, progress=progress, log=log_err)


def stage_series(cfg: RunConfig, run_dir: Path, *, progress=True, device=None) -> Path:
    """Encode the run's episodes with its V into (mu, logvar) series, packed for M; returns the packed folder.

    Introduced in chapter 5.
    """
    vae, _ = load_model(ConvVAE, VAEConfig, run_dir, "vae", cfg.env, pick_device(device))
    encode_series(vae, run_dir / "vae.safetensors", run_dir / "episodes", run_dir / "series", progress=progress)
    return pack_series(run_dir / "series")


def stage_mdnrnn(cfg: RunConfig, run_dir: Path, *, progress=True, device=None):
    """Encode the series, then train the run's M (resumes). Chapter 5."""
    log_err("[train-mdnrnn] encoding frames to (mu, logvar) series")
    packed = stage_series(cfg, run_dir, progress=progress, device=device)
    log_err(f"[train-mdnrnn] LSTM {cfg.mdnrnn.hidden_size}, {cfg.mdnrnn_train.steps} steps")
    train_mdnrnn(packed, run_dir, cfg.env, config=cfg.mdnrnn, train=cfg.mdnrnn_train, seed=cfg.seed, device=device,
                 progress=progress, log=log_err)


def stage_controller(cfg: RunConfig, run_dir: Path, *, progress=True, executor=None, device=None):
    """Train the run's C with CMA-ES, in the real game or in the dream (resumes). Chapter 7."""
    c = cfg.cmaes
    if c.where == "dream":
        return stage_controller_dream(cfg, run_dir, progress=progress, device=device)
    if c.where != "real":
        raise WMError(f"--where must be 'real' or 'dream', got {c.where!r}")
    load_model(ConvVAE, VAEConfig, run_dir, "vae", cfg.env)  # clear errors before spawning workers
    from ..mdnrnn import MDNRNN, MDNRNNConfig
    load_model(MDNRNN, MDNRNNConfig, run_dir, "mdnrnn", cfg.env)
    log_err(f"[train-controller] CMA-ES in the real {cfg.env}: pop {c.popsize} x {c.rollouts} rollouts, "
            f"{c.generations} generations, {resolve_workers(c.workers)} workers")

    with open_executor(executor, c.workers) as ex:
        def evaluate_population(solutions, generation):
            seeds = [train_seed(cfg.seed, generation, r) for r in range(c.rollouts)]
            return real_returns(cfg.env, run_dir, cfg.controller, solutions, seeds, max_steps=c.max_steps,
                                stall_steps=c.stall_steps, executor=ex, desc=f"generation {generation + 1}", progress=progress)

        def evaluate_mean(params):
            seeds = [eval_seed(cfg.seed + 1, i) for i in range(c.eval_episodes)]
            r = real_returns(cfg.env, run_dir, cfg.controller, np.asarray(params)[None], seeds, max_steps=c.max_steps,
                             executor=ex, desc="evaluate mean", progress=progress)[0]
            return float(r.mean()), float(r.std()), r

        train_cmaes(evaluate_population, cfg.controller, c, out_dir=run_dir, env=cfg.env, seed=cfg.seed,
                    evaluate_mean=evaluate_mean, log=log_err, progress=progress)


def stage_evaluate(cfg: RunConfig, run_dir: Path, *, progress=True, executor=None) -> dict:
    res = evaluate(cfg.env, run_dir, cfg.eval_episodes, seed=cfg.seed, max_steps=cfg.eval_max_steps,
                   workers=cfg.cmaes.workers, executor=executor, progress=progress)
    write_json(run_dir / "evaluation.json", res)
    log_err(f"[evaluate] {cfg.env}: {res['mean']:.1f} +- {res['std']:.1f} over {res['episodes']} episodes")
    return res


def stage_iterate(cfg: RunConfig, run_dir: Path, *, progress=True, executor=None, device=None):
    """Rounds of the iterative procedure: new data from the agent, more M training, C again in the dream. Chapter 10."""
    it = cfg.iterate
    if it.iterations and cfg.cmaes.where != "dream":
        raise WMError(f"the iterative procedure retrains C in the dream, and {cfg.env}'s C trains in the real game "
                      "(its M predicts no reward); iterate with --env doom")
    for k in range(1, it.iterations + 1):
        iterate_round(cfg, run_dir, k, progress=progress, device=device, executor=executor)


def iterate_round(cfg: RunConfig, run_dir: Path, k: int, *, first: int = 1, start=None, start_step: int = 0,
                  progress=True, device=None, executor=None) -> dict:
    """Round k: episodes played by the current agent, M trained on, C trained again in the dream.

    From round `first` on, each round trains M it.mdnrnn_steps further than the M the rounds start from: the
    run's own (cfg.mdnrnn_train.steps), or `start`, an M trained elsewhere for start_step steps of which the run
    has only the weights (scripts/pretrained_doom.py iterate). Returns the round's episodes and M's steps.
    """
    import dataclasses
    it = cfg.iterate
    episodes = cfg.collect.episodes + k * it.episodes
    log_err(f"[iterate {k}/{it.iterations}] {it.episodes} episodes with the current agent (noise {it.noise})")
    # min_length 0: the agent's quick deaths are kept, they are what M most needs to learn from
    collect(cfg.env, run_dir / "episodes", episodes, seed=cfg.seed, policy="agent", max_steps=cfg.collect.max_steps,
            min_length=0, workers=cfg.collect.workers, executor=executor, progress=progress, weights=str(run_dir),
            noise=it.noise)
    packed = stage_series(cfg, run_dir, progress=progress, device=device)
    before = cfg.mdnrnn_train.steps if start is None else start_step
    train = dataclasses.replace(cfg.mdnrnn_train, steps=before + (k - first + 1) * it.mdnrnn_steps)
    log_err(f"[iterate {k}/{it.iterations}] M on {episodes} episodes, to step {train.steps}")
    train_mdnrnn(packed, run_dir, cfg.env, config=cfg.mdnrnn, train=train, seed=cfg.seed, device=device,
                 progress=progress, log=log_err, start=start, start_step=start_step)
    # A seed of its own per round: with round 0's, a dream that changed little would hand CMA-ES the same
    # candidates and tracks again, and C_k would come out equal to C_0.
    stage_controller_dream(cfg, run_dir, progress=progress, device=device, state_name=f"cmaes_iter{k}",
                           seed=cfg.seed + 1_000_003 * k)
    return {"round": k, "episodes": episodes, "m_steps": train.steps}


def stage_controller_dream(cfg: RunConfig, run_dir: Path, *, progress=True, device=None, state_name="cmaes",
                           seed: int | None = None):
    """CMA-ES inside M's dream: each generation's pop x rollouts episodes run as one batch."""
    seed = cfg.seed if seed is None else seed
    from ..dream import DreamModel, dream_returns
    c, d = cfg.cmaes, cfg.dream
    if cfg.env != "doom":
        raise WMError(f"{cfg.env}'s M predicts no reward, so its dream cannot score a controller; train C with "
                      "--where real (the paper trained CarRacing's C in the real game)")
    model = DreamModel(run_dir, cfg.env, pick_device(device), obs=cfg.controller.kind)
    log_err(f"[train-controller] CMA-ES in {cfg.env}'s dream (tau {d.tau}): pop {c.popsize} x {c.rollouts} "
            f"rollouts = {c.popsize * c.rollouts} episodes per generation in one batch, {c.generations} generations")

    def evaluate_population(solutions, generation):
        return dream_returns(model, cfg.controller, solutions, rollouts=c.rollouts, dream=d,
                             seed=train_seed(seed, generation, 0))

    def evaluate_mean(params):  # the virtual score; the real one is measured by `evaluate`
        r = dream_returns(model, cfg.controller, np.asarray(params)[None], rollouts=c.eval_episodes, dream=d,
                          seed=eval_seed(cfg.seed + 1, 0))[0]
        return float(r.mean()), float(r.std())

    train_cmaes(evaluate_population, cfg.controller, c, out_dir=run_dir, env=cfg.env, seed=seed,
                evaluate_mean=evaluate_mean, log=log_err, progress=progress, state_name=state_name)
