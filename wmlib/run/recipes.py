"""The shipped runs: the settings that made each shipped artefact (a RunConfig) and the procedure that ran them.

    artefact                       settings               procedure                     script (scripts/)
    pretrained/carracing           carracing_v2           carracing_v2_world_model, _m, carracing_v2.py
                                                          _controller, _ship
    pretrained/carracing-v1        carracing_v1           train_carracing_v1            pretrained_carracing.py
    pretrained/carracing-v1/ablation  carracing_ablation  ablation_carracing            ablation_carracing.py
    pretrained/doom                doom_gpu, doom_iterate train_doom_gpu, iterate_doom  pretrained_doom.py
    pretrained/doom/round0         doom_gpu (on a CPU)    train_doom_gpu, ship_doom_round0  pretrained_doom.py

Each setting is spelled out in full, with the paper's models, rather than as edits of a profile: a profile
may be resized for the book, the settings that made the shipped weights may not. The artefact's model card
(pretrained/*/model_card.json) records the exact command and what the run measured. The scripts only parse
the command line and call these, passing the paths (where the shipped weights are).
"""
import json
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_path, load_model, pick_device, read_json, save_model, save_npz, write_json, write_text
from ..cmaes import CMAESConfig
from ..collect import CollectConfig, collect
from ..dream import DreamConfig
from ..errors import WMError
from ..mdnrnn import MDNRNN, MDNRNNConfig
from ..parallel import open_executor
from ..rollout import evaluate
from ..series import encode_series, pack_series
from ..studies.ablation import KINDS, ablation
from ..studies.dreamcheck import dream_check, held_shares
from ..train_mdnrnn import MDNTrainConfig, train_mdnrnn
from ..train_vae import VAETrainConfig
from ..vae import ConvVAE, VAEConfig
from .pipeline import (iterate_round, log_err, open_run, stage_collect, stage_controller, stage_controller_dream,
                       stage_mdnrnn, stage_vae, timed)
from .profiles import IterateConfig, RunConfig, get_config


# The settings, spelled out (not a profile's edited: a profile may change, what made the weights does not)

SHIPPED_PROFILE = "default"  # the profile the shipped runs' run.json and model cards name


def shipped_config(env: str, **settings) -> RunConfig:
    """A RunConfig of `env` with the paper's V, M and C (the models of every profile) and `settings`."""
    models = get_config(env, "paper")
    return RunConfig(env=env, profile=SHIPPED_PROFILE, seed=0, vae=models.vae, mdnrnn=models.mdnrnn,
                     controller=models.controller, **settings)


def carracing_v1(generations: int = 60, workers: int = 2) -> RunConfig:
    """pretrained/carracing-v1, the first shipped agent (its model_card.json): a data and training budget that
    fits a 2-core CPU over several sittings. 240 brownian-policy episodes (the random_weights policy leaves the
    playfield in most episodes), V 1 epoch, M 300 steps of 32 x 999, C (z + h, linear) by CMA-ES in the real
    game, pop 16 x 2 rollouts, episodes of 1,000 steps (the shipped C: 129 generations)."""
    return shipped_config(
        "carracing",
        collect=CollectConfig(episodes=240, max_steps=1000, policy="brownian", workers=workers),
        vae_train=VAETrainConfig(epochs=1, batch_size=100, lr=1e-3),
        mdnrnn_train=MDNTrainConfig(steps=300, batch_size=32, seq_len=999),
        cmaes=CMAESConfig(popsize=16, rollouts=2, generations=generations, max_steps=1000, workers=workers,
                          eval_every=0, eval_episodes=0),
        eval_episodes=20)


def carracing_ablation(generations: int = 30, workers: int = 2) -> RunConfig:
    """pretrained/carracing-v1/ablation (ablation.json, the table chapter 7 shows; V and M of
    pretrained/carracing-v1/model_card.json): each of the three controllers trained from scratch at the shipped
    C's settings (carracing_v1: pop 16 x 2 rollouts, 1,000-step episodes, the same seed, so the same training
    tracks) for `generations` generations (the shipped table: 30)."""
    return carracing_v1(generations, workers)


# Doom's V is pretrained/doom's, trained earlier (its model card says how): no recipe trains it, so vae_train
# keeps its defaults. Episodes are held-random, 100 to 2,100 steps; the dream ends at 2,100 steps too.
DOOM_COLLECT = CollectConfig(episodes=1500, max_steps=2100, policy="held_random", min_length=100)
DOOM_DREAM = DreamConfig()  # the paper's: tau 1.15, episodes of at most 2,100 steps


def doom_gpu(workers: int = 16, m_batch: int = 100, m_seq: int = 500, *, eval_episodes: int = 100) -> RunConfig:
    """Round 0 of pretrained/doom (pretrained/doom/model_card.json, actual_training.gpu_stage), on one GPU: M at
    the paper's batch of 100 windows x 500 steps (lr 1e-3 decaying to ~1.5e-4), CMA-ES in the dream at the
    paper's pop 64 x 16, C scored on `eval_episodes` real episodes. The episodes, M's steps and the generations
    are those of the shipped round 0 (4,177, 4,954, 28): train_doom_gpu sets them to what fits its time budget."""
    return shipped_config(
        "doom",
        collect=replace(DOOM_COLLECT, episodes=4177, workers=workers),
        mdnrnn_train=MDNTrainConfig(steps=4954, batch_size=m_batch, seq_len=m_seq, lr=1e-3, min_lr=1e-4,
                                    lr_decay=0.05 ** (1 / 4954), checkpoint_every_s=120),
        cmaes=CMAESConfig(popsize=64, rollouts=16, generations=28, eval_every=0, where="dream"),
        dream=DOOM_DREAM, eval_episodes=eval_episodes)


def doom_iterate(rounds: int = 4, workers: int = 2, *, random_episodes: int = 1500, episodes: int = 400,
                 noise: float = 0.5, m_steps: int = 300, m_batch: int = 32, m_seq: int = 250, m_lr: float = 1e-4,
                 generations: int = 20, popsize: int = 64, rollouts: int = 16,
                 eval_episodes: int = 100) -> RunConfig:
    """Rounds 1..`rounds` of pretrained/doom's iterative procedure (pretrained/doom/model_card.json,
    actual_training.iterations): each round plays `episodes` real episodes with the current C (Gaussian noise
    `noise` on its action), continues M by `m_steps` steps of m_batch x m_seq (constant lr m_lr) on the first
    `random_episodes` held-random episodes and every round's, trains a new C in the dream from scratch (pop
    popsize x rollouts, `generations` generations) and scores it on `eval_episodes` real episodes. M's steps
    count from the M the rounds continue (iterate_doom), not from mdnrnn_train.steps. The shipped rounds: 1 on
    a GPU (m_batch 100, m_seq 500, m_steps 600, 15 generations), 2 on a 2-core CPU (m_steps 300, 12
    generations)."""
    return shipped_config(
        "doom",
        collect=replace(DOOM_COLLECT, episodes=random_episodes, workers=workers),
        mdnrnn_train=MDNTrainConfig(steps=0, batch_size=m_batch, seq_len=m_seq, lr=m_lr, min_lr=m_lr,
                                    checkpoint_every_s=120),
        cmaes=CMAESConfig(popsize=popsize, rollouts=rollouts, generations=generations, eval_every=0, where="dream"),
        dream=DOOM_DREAM,
        iterate=IterateConfig(iterations=rounds, episodes=episodes, noise=noise, mdnrnn_steps=m_steps),
        eval_episodes=eval_episodes)


# pretrained/carracing-v1

def train_carracing_v1(cfg: RunConfig, run_dir: Path) -> None:
    """The pipeline's stages up to C (each resumes: rerun after an interrupt, or with more generations)."""
    run_dir = Path(run_dir)
    open_run(run_dir, cfg)
    for name, stage in (("collect", stage_collect), ("vae", stage_vae), ("mdnrnn", stage_mdnrnn),
                        ("controller", stage_controller)):
        with timed(run_dir, name):
            stage(cfg, run_dir, progress=False)


# pretrained/carracing-v1/ablation: the work lives in a work folder; its progress (each controller's CMA-ES state,
# a few kB, and its score) is copied to SHIP/progress-GENERATIONS, from which a fresh clone goes on.

PROGRESS_FILES = ("cmaes/settings.json", "cmaes/state.npz", "cmaes/log.jsonl", "cmaes/switch.npz", "scores.json")


def seed_zh(run_dir: Path, folder: Path, generations: int) -> None:
    """Start zh's CMA-ES from the run's own first `generations` generations (same settings and seed)."""
    src, dst = run_dir / "cmaes", folder / "cmaes"
    if dst.exists():
        return
    try:
        with np.load(src / "state.npz", allow_pickle=False) as f:
            state = {k: f[k] for k in ("fitness", "returns", "checksum")}
    except (OSError, KeyError, ValueError) as e:
        raise WMError(f"cannot read the run's CMA-ES state {src / 'state.npz'} ({e}): train the run's C first "
                      f"(python scripts/pretrained_carracing.py --run-dir {run_dir} --generations {generations})") from e
    if len(state["fitness"]) < generations:
        raise WMError(f"{run_dir}'s own CMA-ES has {len(state['fitness'])} generations, the ablation asks for "
                      f"{generations}: continue it first (python scripts/pretrained_carracing.py --run-dir {run_dir} "
                      f"--generations {generations}) or ask for fewer")
    tmp = folder / "cmaes.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(src / "settings.json", tmp / "settings.json")
    save_npz(tmp / "state.npz", **{k: v[:generations] for k, v in state.items()})
    lines = (src / "log.jsonl").read_text().splitlines()[:generations]
    (tmp / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    tmp.rename(dst)  # all or nothing: an interrupted copy leaves no half-seeded state


def _copy_tree_atomic(files: list[tuple[Path, Path]], dst_dir: Path) -> None:
    """Copy (source, relative path) pairs into a new dst_dir that replaces the old one by renames: a kill
    leaves either folder whole, never a mix of the two."""
    tmp = dst_dir.with_name(dst_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for src, rel in files:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, tmp / rel)
    old = dst_dir.with_name(dst_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst_dir.exists():
        dst_dir.rename(old)
    tmp.rename(dst_dir)
    shutil.rmtree(old, ignore_errors=True)


def save_progress(work: Path, progress: Path) -> list[str]:
    """Copy each controller's CMA-ES state and score from the work folder to `progress` (a folder per kind,
    replaced all at once). Returns the kinds copied."""
    saved = []
    for kind in KINDS:
        files = [(work / kind / rel, Path(rel)) for rel in PROGRESS_FILES if (work / kind / rel).exists()]
        if any(str(rel) == "cmaes/state.npz" for _, rel in files):
            _copy_tree_atomic(files, progress / kind)
            saved.append(kind)
    return saved


def restore_progress(ship_dir: Path, generations: int, work: Path) -> list[str]:
    """Start each controller that has no state in the work folder from the saved progress: that of this
    budget (ship_dir/progress-GENERATIONS, score included) or else of the largest smaller budget, whose CMA-ES
    generations are the first ones of this budget's (same settings and seed), so a longer ablation goes on
    from a shorter one. Returns the kinds restored."""
    budgets = ((p.name.removeprefix("progress-"), p) for p in ship_dir.glob("progress-*"))
    saved = sorted((int(g), p) for g, p in budgets if g.isdigit() and int(g) <= generations)
    restored = []
    for kind in KINDS:
        if (work / kind / "cmaes").exists():
            continue
        for budget, progress in reversed(saved):
            src = progress / kind
            if (src / "cmaes" / "state.npz").exists():
                rels = [rel for rel in PROGRESS_FILES if (src / rel).exists() and
                        (budget == generations or rel != "scores.json")]
                _copy_tree_atomic([(src / rel, Path(rel)) for rel in rels], work / kind)
                restored.append(kind)
                break
    return restored


def ship(work: Path, dest: Path, command: str, weights_text: str, eval_seed: int) -> None:
    """Copy the finished table to dest (atomic writes), with the command that made it."""
    res = read_json(work / "ablation.json")
    res["command"] = command
    res["weights"] = (f"V and M of {weights_text}; each controller scored on {res['episodes']} unseen tracks "
                      f"(evaluation seed {eval_seed})")
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / "ablation.json", res)
    write_text(dest / "ablation.md", res["markdown"] + "\n")


def ablation_carracing(weights: Path, cfg: RunConfig, *, work: Path, ship_dir: Path, shipped_vm: bool,
                       episodes: int = 100, command: str) -> dict:
    """The ablation with the V and M of `weights`, its table shipped to ship_dir. With the shipped V and M
    (shipped_vm) each controller starts from the progress saved in ship_dir and its progress is saved there
    as soon as it is scored; with a run of carracing_v1, zh (the run's own C) replays the run's CMA-ES."""
    weights, work, ship_dir = Path(weights), Path(work), Path(ship_dir)
    generations = cfg.cmaes.generations
    is_run = (weights / "run.json").exists()
    if is_run and read_json(weights / "run.json").get("env") != "carracing":
        raise WMError(f"{weights} is a run of another environment: pass pretrained/carracing-v1 or a CarRacing run")
    if not (weights / "vae.safetensors").exists() or not (weights / "mdnrnn.safetensors").exists():
        raise WMError(f"{weights} has no trained V and M (vae.safetensors, mdnrnn.safetensors): pass "
                      "pretrained/carracing-v1 or a run of scripts/pretrained_carracing.py")
    if is_run:
        seed_zh(weights, work / "zh", generations)
    elif shipped_vm:
        restored = restore_progress(ship_dir, generations, work)
        if restored:
            log_err(f"resuming {', '.join(restored)} from the progress saved in {ship_dir}")
    progress = ship_dir / f"progress-{generations}"
    res = ablation(weights, cfg, work, episodes=episodes, kinds=KINDS, log=log_err, progress=False,
                   after_kind=(lambda kind: save_progress(work, progress)) if shipped_vm else None)
    weights_text = "pretrained/carracing-v1 (the first shipped V and M, stored in fp16)" if shipped_vm else str(weights)
    ship(work, ship_dir, command, weights_text, cfg.seed + 1)  # the ablation scores on seed + 1
    return res


# pretrained/doom: round 0 on a GPU within a time budget, then rounds of the iterative procedure

FIXED_POLICIES = ("noop", "left", "right", "random", "held_random")  # the dream check's, minus random C
ROUND_FILES = ("vae.safetensors", "vae.json", "mdnrnn.safetensors", "mdnrnn.json", "controller.safetensors",
               "controller.json", "initial_z.npz")


class Clock:
    """Seconds since the procedure started (what its time budgets count) and a log whose lines show them."""

    def __init__(self):
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def log(self, msg: str) -> None:
        print(f"[{self.elapsed():7.1f} s] {msg}", flush=True)


def use_shipped_v(run_dir: Path, shipped: Path) -> None:
    """V is pretrained/doom's (trained earlier on 1,500 episodes: see its model card), copied into the run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("vae.safetensors", "vae.json"):
        if not (run_dir / name).exists():
            shutil.copy(Path(shipped) / name, run_dir / name)


def encode(run_dir: Path, device, loaders: int) -> Path:
    """The run's episodes as packed (mu, logvar) series, read by `loaders` threads (one per core)."""
    vae, _ = load_model(ConvVAE, VAEConfig, run_dir, "vae", "doom", device)
    encode_series(vae, run_dir / "vae.safetensors", run_dir / "episodes", run_dir / "series", progress=False,
                  loaders=loaders)
    return pack_series(run_dir / "series")


def dream_side(run_dir: Path, cfg: RunConfig, device, taus=(1.0, 1.15), episodes=100) -> dict:
    """The dream half of the dream check (the real half does not change with M), as {"policy @ tau": [mean, std]}."""
    rows = {}
    for tau in taus:
        res = dream_check(run_dir, episodes=episodes, dream=replace(cfg.dream, tau=tau), seed=cfg.seed,
                          device=device, policies=FIXED_POLICIES, real=False)
        rows.update({f"{p} @ {tau}": [round(r["dream_mean"], 1), round(r["dream_std"], 1)]
                     for p, r in res["policies"].items()})
    return rows


def collect_until(cfg: RunConfig, run_dir: Path, clock: Clock, deadline: float) -> int:
    """Held-random episodes on every worker until `deadline`, in chunks of at most 40 s, so that the deadline
    holds whatever the machine's speed. A rerun goes on after the episodes already there (the first chunk's
    rate would otherwise be that of reading them back). Returns the number of episodes."""
    from ..episodes import episode_path
    c = cfg.collect
    with open_executor(None, c.workers) as ex:  # one pool for every chunk
        n, step = 0, 4 * c.workers
        while episode_path(run_dir / "episodes", n).exists():
            n += 1
        while True:
            t = time.monotonic()
            n += step
            collect(cfg.env, run_dir / "episodes", n, seed=cfg.seed, policy=c.policy, max_steps=c.max_steps,
                    min_length=c.min_length, workers=c.workers, executor=ex, progress=False)
            rate = step / (time.monotonic() - t)
            clock.log(f"{n} episodes ({rate:.1f} per second)")
            step = int(rate * min(deadline - clock.elapsed(), 40))
            if step < c.workers:
                return n


def train_m_until(cfg: RunConfig, run_dir: Path, packed: Path, device, clock: Clock, deadline: float) -> dict:
    """M for as many steps as fit before `deadline`, timed by two short probes; lr from 1e-3 to ~1.5e-4."""
    def train(steps, lr_decay):
        train_mdnrnn(packed, run_dir, cfg.env, config=cfg.mdnrnn,
                     train=replace(cfg.mdnrnn_train, steps=steps, lr_decay=lr_decay), seed=cfg.seed, device=device,
                     progress=False, log=clock.log)

    for probe in (20, 40):  # the second probe times steps without the start-up cost
        t = time.monotonic()
        train(probe, 1.0)
    per_step = (time.monotonic() - t) / 20
    steps = 40 + max(0, int((deadline - clock.elapsed()) / per_step * 0.95))
    m = cfg.mdnrnn_train
    clock.log(f"M: {per_step * 1e3:.1f} ms per step of {m.batch_size} x {m.seq_len}, training to step {steps}")
    train(steps, 0.05 ** (1 / steps))
    return {"steps": steps, "ms_per_step": round(per_step * 1e3, 1), "batch": m.batch_size, "seq_len": m.seq_len}


def cmaes_until(cfg: RunConfig, run_dir: Path, device, clock: Clock, deadline: float) -> int:
    """CMA-ES in the dream for as many generations as fit before `deadline`. Returns the generations."""
    log = run_dir / "cmaes" / "log.jsonl"  # a rerun goes on after the generations already there
    gens = len(log.read_text().splitlines()) if log.exists() else 0
    per_gen = None
    while per_gen is None or clock.elapsed() + per_gen < deadline:
        t = time.monotonic()
        target = gens + 1 if per_gen is None else \
            gens + max(1, int((deadline - clock.elapsed()) / per_gen * 0.9))
        stage_controller_dream(replace(cfg, cmaes=replace(cfg.cmaes, generations=target)), run_dir, progress=False,
                               device=device)
        per_gen, gens = (time.monotonic() - t) / (target - gens), target
    return gens


def train_doom_gpu(cfg: RunConfig, run_dir: Path, *, shipped_v: Path, seconds: float, collect_until_s: float,
                   m_until_s: float, check_episodes: int = 100, device=None) -> dict:
    """Round 0 within a time budget, in seconds from the start: episodes until collect_until_s, series with the
    shipped V, M until m_until_s, the dream check's dream side (check_episodes per policy), CMA-ES in the dream
    until `seconds`, then C scored in the real game. Writes RUN_DIR/gpu_summary.json and returns it."""
    clock, run_dir, dev = Clock(), Path(run_dir), pick_device(device)
    open_run(run_dir, cfg)  # run.json: what `python -m wmlib export` and `evaluate` read, as in iterate_doom
    use_shipped_v(run_dir, shipped_v)
    workers = cfg.collect.workers
    summary = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else str(dev), "workers": workers}
    n = collect_until(cfg, run_dir, clock, collect_until_s)
    packed = encode(run_dir, dev, loaders=min(16, workers))
    summary["episodes"], summary["frames"] = n, int(np.load(packed / "lengths.npy").sum())
    clock.log(f"{summary['frames']} frames encoded")
    summary["mdnrnn"] = train_m_until(cfg, run_dir, packed, dev, clock, m_until_s)
    summary["dream"] = dream_side(run_dir, cfg, dev, episodes=check_episodes)
    clock.log(f"dream check, dream side: {summary['dream']}")
    summary["cmaes_generations"] = cmaes_until(cfg, run_dir, dev, clock, seconds)
    res = evaluate(cfg.env, run_dir, cfg.eval_episodes, seed=cfg.seed, workers=workers, progress=False)
    summary["real"] = [res["mean"], res["std"]]
    clock.log(f"real game: {res['mean']:.1f} +- {res['std']:.1f} over {cfg.eval_episodes} episodes")
    write_json(run_dir / "gpu_summary.json", summary)
    return summary


def c_in_dream(weights: Path, controller, episodes: int, dream: DreamConfig, device, seed: int):
    """`controller` in the dream of the M in `weights`, `episodes` episodes in one batch: (steps (n,), actions)."""
    from ..dream import DreamModel
    from ..studies.dreamcheck import controller_in_dream
    return controller_in_dream(DreamModel(weights, "doom", device), controller, episodes, dream=dream, seed=seed)


def ship_doom_round0(run_dir: Path, out: Path, *, shipped: Path, command: str, episodes: int = 100,
                     dream_episodes: int = 100, watched: int = 10, workers: int = 2, note: str = "") -> dict:
    """pretrained/doom/round0: the M and C of a round-0 run (train_doom_gpu) in fp16, with their first frames
    and a model card, but not V: every round shares pretrained/doom's V (`shipped`), which the run used, so
    the folder ships none (wmlib.book.round_weights puts them together). The card records C's survival in the
    real game (`episodes`, the stored fp16 weights), in its own dream and in the dream of `shipped`'s M
    (`dream_episodes` each, tau 1.15), and the share of its actions that step left, stand still or step right
    in both dreams and in `watched` real episodes."""
    from ..agent import load_agent
    from ..collect import play_episode
    from ..controller import Controller, ControllerConfig
    from ..envs import make_env
    from ..rollout import eval_seed
    from .export import export
    run_dir, out, shipped = Path(run_dir), Path(out), Path(shipped)
    work = out.with_name(out.name + ".export")
    shutil.rmtree(work, ignore_errors=True)
    card = export(run_dir, work, "doom", episodes=episodes, seed=0, command=command, workers=workers,
                  progress=False)
    run_v = load_model(ConvVAE, VAEConfig, work, "vae", "doom")[0].state_dict()
    ship_v = load_model(ConvVAE, VAEConfig, shipped, "vae", "doom")[0].state_dict()
    if any(not torch.equal(run_v[k], ship_v[k]) for k in ship_v):
        raise WMError(f"{run_dir}'s V is not {shipped}'s: a round folder without V needs the shipped one")
    dev = torch.device("cpu")
    c = load_model(Controller, ControllerConfig, work, "controller", "doom", dev)[0]
    own, own_actions = c_in_dream(work, c, dream_episodes, DOOM_DREAM, dev, seed=eval_seed(1, 0))
    later, later_actions = c_in_dream(shipped, c, dream_episodes, DOOM_DREAM, dev, seed=eval_seed(1, 0))
    agent, env, real_actions = load_agent(work, "doom", device=dev), make_env("doom"), []
    for i in range(watched):
        agent.reset(1, eval_seed(0, i))
        ep = play_episode(env, lambda frame: agent.act(frame[None])[0], eval_seed(0, i))
        real_actions.append(ep["action"][:, 0])
    env.close()
    summary = {name: read_json(run_dir / f"{name}_summary.json") for name in ("gpu", "cpu")
               if (run_dir / f"{name}_summary.json").exists()}
    real = card["score"]
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parent).stdout.strip()
    if card.get("commit") and dirty:
        card["commit"] += " with uncommitted changes"
    card.update({
        "what": "round 0 of pretrained/doom's iterative procedure (scripts/pretrained_doom.py gpu), trained again: "
                "M on held-random episodes only, C by CMA-ES in M's dream. V is pretrained/doom's (the same for "
                "every round), so this folder holds M, C and initial_z.npz only" + (f". {note}" if note else ""),
        "run": summary,
        "score_note": f"{episodes} real episodes (seed 0) with the stored fp16 weights and {shipped.parent.name}/"
                      f"{shipped.name}'s V, measured by `python -m wmlib export` before V was left out of the folder",
        "survival": {
            "real": {"mean": real["mean"], "std": real["std"], "episodes": real["episodes"]},
            "own_dream": {"mean": float(own.mean()), "std": float(own.std()), "episodes": dream_episodes,
                          "tau": DOOM_DREAM.tau, "max_steps": DOOM_DREAM.max_steps},
            "shipped_m_dream": {"mean": float(later.mean()), "std": float(later.std()), "episodes": dream_episodes,
                                "tau": DOOM_DREAM.tau, "max_steps": DOOM_DREAM.max_steps,
                                "m": f"{shipped.parent.name}/{shipped.name}'s M (round 2)"},
            "own_dream_over_real": float(own.mean() / real["mean"]),
        },
        "actions": {"own_dream": held_shares(own_actions), "shipped_m_dream": held_shares(later_actions),
                    "real": held_shares(np.concatenate(real_actions)), "real_episodes_watched": watched,
                    "thresholds": "left below -1/3, right above 1/3, in between standing still"},
    })
    out.mkdir(parents=True, exist_ok=True)
    for name in ("mdnrnn.safetensors", "mdnrnn.json", "controller.safetensors", "controller.json", "initial_z.npz"):
        shutil.copy2(work / name, out / name)
    write_json(out / "model_card.json", card)
    shutil.rmtree(work)
    return card


def doom_round0_cpu(workers: int = 2, m_batch: int = 16, m_seq: int = 250, *, popsize: int = 16,
                    rollouts: int = 4) -> RunConfig:
    """pretrained/doom/round0 (its model_card.json): round 0 again on a busy 2-core CPU, after the `gpu` stage's
    collection and encoding (run there with --device cpu): M trained on in batches of m_batch x m_seq (lr 1e-3
    decaying towards 1e-4 over about 600 steps), CMA-ES in the dream at pop popsize x rollouts (the paper's 64 x
    16 costs minutes per generation on such a CPU). Steps and generations are what fit round0_cpu's budgets."""
    cfg = doom_gpu(workers, m_batch, m_seq)
    return replace(cfg, mdnrnn_train=replace(cfg.mdnrnn_train, steps=0, lr_decay=0.05 ** (1 / 600)),
                   cmaes=replace(cfg.cmaes, popsize=popsize, rollouts=rollouts, generations=0))


def round0_cpu(cfg: RunConfig, run_dir: Path, *, m_seconds: float, c_seconds: float, device=None) -> dict:
    """Go on with a round-0 run (`gpu` on a CPU, stopped or finished): M trained on in chunks of 10 steps for
    m_seconds, then CMA-ES in the dream for c_seconds. Each part resumes. Writes RUN_DIR/cpu_summary.json (its
    numbers count every attempt) and returns it."""
    clock, run_dir, dev = Clock(), Path(run_dir), pick_device(device)
    path = run_dir / "cpu_summary.json"
    summary = read_json(path) if path.exists() else {"m_seconds": 0.0, "c_seconds": 0.0}
    packed = encode(run_dir, dev, loaders=cfg.collect.workers)  # the episodes not yet encoded, if any
    summary["episodes"] = len(list((run_dir / "episodes").glob("ep_*.npz")))
    summary["frames"] = int(np.load(packed / "lengths.npy").sum())
    meta = run_dir / "mdnrnn.json"
    steps = read_json(meta)["steps"] if meta.exists() else 0
    while clock.elapsed() < m_seconds:
        steps += 10
        train_mdnrnn(packed, run_dir, cfg.env, config=cfg.mdnrnn, train=replace(cfg.mdnrnn_train, steps=steps),
                     seed=cfg.seed, device=dev, progress=False, log=clock.log)
    m_done = clock.elapsed()
    summary["m_seconds"] = round(summary["m_seconds"] + m_done)
    summary["mdnrnn"] = {"steps": read_json(meta)["steps"], "batch": cfg.mdnrnn_train.batch_size,
                         "seq_len": cfg.mdnrnn_train.seq_len}
    clock.log(f"M at step {summary['mdnrnn']['steps']}")
    summary["cmaes_generations"] = cmaes_until(cfg, run_dir, dev, clock, m_done + c_seconds)
    summary["c_seconds"] = round(summary["c_seconds"] + clock.elapsed() - m_done)
    summary["cmaes"] = {"popsize": cfg.cmaes.popsize, "rollouts": cfg.cmaes.rollouts, "tau": cfg.dream.tau}
    clock.log(f"CMA-ES: {summary['cmaes_generations']} generations")
    write_json(path, summary)
    return summary


def start_from(run_dir: Path, src: Path, shipped_v: Path) -> None:
    """Copy V, M, C and initial_z from the GPU run (M continues from these weights: see iterate_doom)."""
    use_shipped_v(run_dir, shipped_v)
    for name in ("mdnrnn.safetensors", "mdnrnn.json", "controller.safetensors", "controller.json",
                 "initial_z.npz"):  # initial_z.npz is written again when the episodes are encoded
        if not (run_dir / name).exists() and (name != "initial_z.npz" or (src / name).exists()):
            shutil.copy(src / name, run_dir / name)


def iterate_doom(cfg: RunConfig, run_dir: Path, src: Path, *, shipped_v: Path, first_round: int = 1,
                 check_episodes: int = 100, device=None) -> None:
    """Rounds first_round..cfg.iterate.iterations of the iterative procedure (pipeline.iterate_round), going on
    from the V, M and C of `src` (the GPU run, or a round's snapshot when the rounds before first_round happened
    elsewhere). After each round, the dream check's dream side and C's score in the real game go
    to RUN_DIR/roundK/round.json beside a copy of the round's V, M, C and initial_z, ready for export; a round
    with a round.json is done."""
    clock, run_dir, src, dev = Clock(), Path(run_dir), Path(src), pick_device(device)
    open_run(run_dir, cfg)  # run.json: what `python -m wmlib export` reads
    start_from(run_dir, src, shipped_v)
    start, meta = load_model(MDNRNN, MDNRNNConfig, src, "mdnrnn", cfg.env)  # the first round continues it
    clock.log(f"random episodes 0..{cfg.collect.episodes - 1} (seed {cfg.seed}, as the GPU run's first ones)")
    stage_collect(cfg, run_dir, progress=False)
    for k in range(first_round, cfg.iterate.iterations + 1):
        snap = run_dir / f"round{k}"
        if (snap / "round.json").exists():
            continue
        t = time.monotonic()
        out = iterate_round(cfg, run_dir, k, first=first_round, start=start, start_step=meta.get("steps", 0),
                            progress=False, device=dev)
        dream = dream_side(run_dir, cfg, dev, taus=(cfg.dream.tau,), episodes=check_episodes)
        clock.log(f"round {k}: dream check, dream side: {dream}")
        res = evaluate(cfg.env, run_dir, cfg.eval_episodes, seed=cfg.seed, workers=cfg.collect.workers,
                       progress=False)
        m = cfg.mdnrnn_train
        out.update({"m_batch": [m.batch_size, m.seq_len], "dream": dream,
                    "virtual_mean_fitness": read_json(run_dir / "controller.json")["mean_fitness"],
                    "real_mean": res["mean"], "real_std": res["std"], "real_episodes": cfg.eval_episodes,
                    "seconds": round(time.monotonic() - t)})
        clock.log(f"round {k}: {out}")
        snap.mkdir(exist_ok=True)
        for name in ROUND_FILES:
            shutil.copy(run_dir / name, snap / name)
        write_json(snap / "round.json", out)  # last: the round is done


# pretrained/carracing, the second agent (its search goes on toward 900): a V that sees what the agent sees

V2_AGENT_EPISODES, V2_BROWNIAN_EPISODES, V2_HELD_OUT = 600, 400, 20
V2_SEP_FROM = 105  # the search's generations after this one are sep-CMA-ES (wmlib.cmaes: they resume anywhere)
# After generation 190, the same 16 candidates x 4 rollouts, with every coordinate's standard deviation kept at
# least 0.04: under noise, cma's step-size control had shrunk sigma from 0.1 to 0.02, where the candidates
# differ less than a track's luck does. Around the mean of generation 188, 16 candidates x 8 tracks
# (benchmarks/carracing_ranking.py --sigma S --stall-steps 100 --seed 7, benchmarks/README.md) gave, at sigma
# 0.021 / 0.042 / 0.084, the candidates' true std 64 / 110 / 200 against a track's noise of 192-217, so a
# ranking by 4 tracks of 0.31 / 0.51 / 0.78, and the population's mean return 792 / 715 / 501. At 0.04 the
# ranking is that of 8 rollouts at 0.02, at no cost in episodes; the learning curve measures whether it pays.
# It did not, measurably: the mean scored 802 at generation 202 and 806 at 250 on the same 100 unseen tracks
# (standard error of the difference about 20), and the 16-track scores stayed at 759-810 (0.35 ranking since).
# After generation 260, 32 candidates x 4 rollouts: when the ranking is mostly luck, more candidates average
# more of it out of each step of the mean (a (mu/mu, lambda) mean of twice the selected candidates), which on
# noisy problems pays better than scoring the same candidates on more tracks; twice the episodes per generation.
V2_RESIZES = ((190, 16, 4, 0.04), (260, 32, 4, 0.04))


def carracing_v2(workers: int = 2, v_epochs: float = 3, m_steps: int = 1500, generations: int = 400) -> RunConfig:
    """pretrained/carracing (model_card.json), the second CarRacing agent: V trained from scratch on 1,000
    episodes, 600 played by the first shipped agent (pretrained/carracing-v1) with Gaussian noise 0.15 on its
    actions, so the road and the turns are in view as the agent sees them, and 400 brownian ones; 20 more of
    each are held out to measure V and M. V `v_epochs` epochs of batch 100 at lr 1e-3; M `m_steps` steps of 32
    x 999 on the same 1,000 episodes (lr 1e-3 decaying to 1e-4); C (z + h, linear) by CMA-ES from scratch in
    the real game, pop 16 x 4 rollouts (4 rank two independent track sets at 0.65, 2 at 0.47:
    benchmarks/README.md), a training episode ended after 100 steps without a new tile (2.6x fewer env-steps
    from scratch, ranking 0.79 of the full one), the mean scored on 16 tracks every 10 generations. After
    generation V2_SEP_FROM the search goes on as sep-CMA-ES from its mean and step size there: with 867
    parameters and 16 candidates, full CMA-ES's covariance had barely left the identity, and its replay drew
    other candidates under another eigensolver (wmlib.cmaes). V2_RESIZES then restarts it with its own
    population, rollouts and floor on the step size."""
    return shipped_config(
        "carracing",
        collect=CollectConfig(episodes=V2_AGENT_EPISODES + V2_HELD_OUT, max_steps=1000, policy="agent",
                              workers=workers),
        vae_train=VAETrainConfig(epochs=v_epochs, batch_size=100, lr=1e-3, checkpoint_every_s=300),
        mdnrnn_train=MDNTrainConfig(steps=m_steps, batch_size=32, seq_len=999, lr=1e-3, min_lr=1e-4,
                                    lr_decay=0.01 ** (1 / m_steps), checkpoint_every_s=300),
        cmaes=CMAESConfig(popsize=16, rollouts=4, generations=generations, max_steps=1000, workers=workers,
                          eval_every=10, eval_episodes=16, stall_steps=100, diagonal_from=V2_SEP_FROM,
                          resizes=V2_RESIZES),
        iterate=IterateConfig(noise=0.15), eval_episodes=100)


@torch.no_grad()
def reconstruction_error(vae: ConvVAE, files: list[Path], frames_per_episode: int = 100, seed: int = 0) -> float:
    """V's mean squared error per pixel (frames in [0, 1]) on `frames_per_episode` frames drawn from each file."""
    from ..episodes import load_episode
    from ..vae import frames_to_tensor
    rng = np.random.default_rng(seed)
    errors = []
    for f in files:
        obs = load_episode(f, keys=("obs",))["obs"]
        x = frames_to_tensor(obs[rng.choice(len(obs), min(frames_per_episode, len(obs)), replace=False)])
        errors.append(float((vae.decode(vae.encode(x)[0]) - x).pow(2).mean()))
    return float(np.mean(errors))


def carracing_v2_world_model(cfg: RunConfig, run_dir: Path, *, agent_weights: Path) -> dict:
    """Collect the 1,040 episodes (resumes: only missing files are played), train V on 1,000 of them (resumes),
    then measure V on held-out agent frames against its training frames: RUN_DIR/v_eval.json."""
    from ..episodes import episode_path
    from ..train_vae import train_vae
    run_dir = Path(run_dir)
    c = cfg.collect
    log_err(f"[carracing-v2] {c.episodes} agent episodes (noise {cfg.iterate.noise}) into {run_dir / 'agent'}")
    collect("carracing", run_dir / "agent", c.episodes, seed=11, policy="agent", max_steps=c.max_steps,
            workers=c.workers, weights=str(agent_weights), noise=cfg.iterate.noise, progress=False)
    log_err(f"[carracing-v2] {V2_BROWNIAN_EPISODES + V2_HELD_OUT} brownian episodes into {run_dir / 'brownian'}")
    collect("carracing", run_dir / "brownian", V2_BROWNIAN_EPISODES + V2_HELD_OUT, seed=12, policy="brownian",
            max_steps=c.max_steps, workers=c.workers, progress=False)
    sources = ([episode_path(run_dir / "agent", i) for i in range(V2_AGENT_EPISODES)]
               + [episode_path(run_dir / "brownian", i) for i in range(V2_BROWNIAN_EPISODES)])
    train = link_episodes(sources, run_dir / "train")  # one folder for V's data stream
    log_err(f"[carracing-v2] V, {cfg.vae_train.epochs} epochs on {len(sources)} episodes")
    vae = train_vae(train, run_dir / "v", "carracing", config=cfg.vae, train=cfg.vae_train, seed=cfg.seed,
                    log=log_err, progress=False)
    held = [episode_path(run_dir / "agent", V2_AGENT_EPISODES + i) for i in range(V2_HELD_OUT)]
    seen = [episode_path(run_dir / "agent", i) for i in range(V2_HELD_OUT)]
    result = {"mse_agent_held_out": reconstruction_error(vae, held),
              "mse_agent_training": reconstruction_error(vae, seen),
              "mse_brownian_held_out": reconstruction_error(
                  vae, [episode_path(run_dir / "brownian", V2_BROWNIAN_EPISODES + i) for i in range(V2_HELD_OUT)]),
              "episodes": len(sources), "epochs": cfg.vae_train.epochs}
    result["held_out_over_training"] = result["mse_agent_held_out"] / result["mse_agent_training"]
    write_json(run_dir / "v_eval.json", result)
    log_err(f"[carracing-v2] V per-pixel MSE: held-out agent frames {result['mse_agent_held_out']:.5f}, training "
            f"agent frames {result['mse_agent_training']:.5f} ({result['held_out_over_training']:.2f}x)")
    return result


def held_out_episodes(run_dir: Path) -> dict[str, list[Path]]:
    """The 20 + 20 held-out episodes (agent, brownian) and as many training ones, to measure V and M on."""
    from ..episodes import episode_path
    agent, brownian = run_dir / "agent", run_dir / "brownian"
    return {"held_out": [episode_path(agent, V2_AGENT_EPISODES + i) for i in range(V2_HELD_OUT)]
            + [episode_path(brownian, V2_BROWNIAN_EPISODES + i) for i in range(V2_HELD_OUT)],
            "training": [episode_path(agent, i) for i in range(V2_HELD_OUT)]
            + [episode_path(brownian, i) for i in range(V2_HELD_OUT)]}


def link_episodes(files: list[Path], folder: Path) -> Path:
    """`files` as folder/episode_K (symbolic links), the layout the collectors write and the encoders read."""
    from ..episodes import episode_path
    folder.mkdir(parents=True, exist_ok=True)
    for k, src in enumerate(files):
        if not episode_path(folder, k).exists():
            episode_path(folder, k).symlink_to(Path(src).resolve())
    return folder


@torch.no_grad()
def m_nll(model: MDNRNN, packed: Path, windows: int = 64, batch: int = 16, seed: int = 0) -> float:
    """M's mixture negative log-likelihood per z dimension (nats) on `windows` random windows of 999 steps of
    the packed series, z drawn from (mu, logvar) as in training; the same seed draws the same windows."""
    from ..series import load_packed
    from ..train_mdnrnn import mdnrnn_loss, sample_windows
    data, rng = load_packed(packed), np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    losses = [float(mdnrnn_loss(model, sample_windows(data, batch, 999, rng, model.config.restart_input, dev),
                                gen)[1]) for _ in range(windows // batch)]
    return float(np.mean(losses))


def carracing_v2_m(cfg: RunConfig, run_dir: Path) -> dict:
    """M on the 1,000 training episodes encoded by the new V (resumes), in RUN_DIR/wm beside a copy of V, then
    measured on held-out episodes against training ones: RUN_DIR/m_eval.json."""
    run_dir, wm = Path(run_dir), Path(run_dir) / "wm"
    open_run(wm, cfg)
    for name in ("vae.safetensors", "vae.json"):
        if not (wm / name).exists():
            shutil.copy(run_dir / "v" / name, wm / name)
    vae, _ = load_model(ConvVAE, VAEConfig, wm, "vae", "carracing")
    packed = {}
    for name, folder in (("train", run_dir / "train"), *((k, link_episodes(v, run_dir / f"m-{k}"))
                                                       for k, v in held_out_episodes(run_dir).items())):
        log_err(f"[carracing-v2] encoding {folder} with the new V")
        series = run_dir / ("series" if name == "train" else f"series-{name}")
        encode_series(vae, wm / "vae.safetensors", folder, series, progress=False, loaders=2)
        packed[name] = pack_series(series)
    log_err(f"[carracing-v2] M, {cfg.mdnrnn_train.steps} steps of {cfg.mdnrnn_train.batch_size} x "
            f"{cfg.mdnrnn_train.seq_len}")
    model = train_mdnrnn(packed["train"], wm, "carracing", config=cfg.mdnrnn, train=cfg.mdnrnn_train,
                         seed=cfg.seed, progress=False, log=log_err)
    # C is searched with V and M as they will be shipped and committed between sittings: float16 weights
    from ..series import load_packed
    train = load_packed(packed["train"])
    save_npz(wm / "initial_z.npz", mu=np.asarray(train["mu"][train["starts"]]),
             logvar=np.asarray(train["logvar"][train["starts"]]))
    for name, cls, cfg_cls in (("vae", ConvVAE, VAEConfig), ("mdnrnn", MDNRNN, MDNRNNConfig)):
        net, meta = load_model(cls, cfg_cls, wm, name, "carracing")
        if not is_float16(wm / f"{name}.safetensors"):
            keep = {k: v for k, v in meta.items() if k not in ("format", "model", "env", "config", "weights_sha256")}
            save_model(net, wm, name, "carracing", extra=keep, dtype=torch.float16)
    result = {"nll_held_out": m_nll(model, packed["held_out"]), "nll_training": m_nll(model, packed["training"]),
              "steps": cfg.mdnrnn_train.steps, "batch": cfg.mdnrnn_train.batch_size,
              "seq_len": cfg.mdnrnn_train.seq_len}
    write_json(run_dir / "m_eval.json", result)
    log_err(f"[carracing-v2] M's NLL per z dimension: held-out {result['nll_held_out']:.4f}, training "
            f"{result['nll_training']:.4f} nats")
    return result


def is_float16(path: Path) -> bool:
    """Whether every tensor of a safetensors file is float16 (as the shipped weights are)."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return all(f.get_slice(k).get_dtype() == "F16" for k in f.keys())


# What a fresh clone needs to go on with the search: V and M (float16), the first frames, V's and M's
# measurements, and the CMA-ES state and log (a few kB). About 10 MB, committed at the end of each sitting.
V2_PROGRESS = ("run.json", "vae.safetensors", "vae.json", "mdnrnn.safetensors", "mdnrnn.json", "initial_z.npz",
               "cmaes/settings.json", "cmaes/state.npz", "cmaes/log.jsonl", "cmaes/switch.npz", "timings.json")
V2_MEASURES = ("v_eval.json", "m_eval.json", "compute.json")


def _v2_progress_files(wm: Path) -> list[str]:
    """V2_PROGRESS and the starts of the search's resizes (cmaes/resize-G.npz) that `wm` holds."""
    return [rel for rel in V2_PROGRESS if (wm / rel).exists()] + \
        sorted(f"cmaes/{p.name}" for p in (wm / "cmaes").glob("resize-*.npz"))


def carracing_v2_save(run_dir: Path, progress: Path) -> list[str]:
    """Copy the search's progress (V2_PROGRESS from RUN_DIR/wm, V2_MEASURES from RUN_DIR) to `progress`,
    replaced all at once. Returns the files copied."""
    from .export import git_commit, machine
    run_dir = Path(run_dir)
    files = [(run_dir / "wm" / rel, Path(rel)) for rel in _v2_progress_files(run_dir / "wm")]
    files += [(run_dir / rel, Path(rel)) for rel in V2_MEASURES if (run_dir / rel).exists()]
    log = run_dir / "wm" / "cmaes" / "log.jsonl"
    gens = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    run = read_json(run_dir / "wm" / "run.json") if (run_dir / "wm" / "run.json").exists() else {}
    summary = {
        "what": "work in progress, not a shipped agent: the next CarRacing V and M, and C's CMA-ES from scratch "
                "with them (scripts/carracing_v2.py; settings: wmlib.run.recipes.carracing_v2)",
        "resume": "python scripts/carracing_v2.py --run-dir runs/car-v2 --stages c",
        "commit": git_commit(), "machine": machine(),
        "data": {"episodes": V2_AGENT_EPISODES + V2_BROWNIAN_EPISODES, "held_out": 2 * V2_HELD_OUT,
                 "policies": {"agent": V2_AGENT_EPISODES, "brownian": V2_BROWNIAN_EPISODES},
                 "agent_noise": run.get("iterate", {}).get("noise")},
        "generations": len(gens), "cmaes_seconds": round(sum(g.get("seconds", 0) for g in gens), 1),
        "last_generation": gens[-1] if gens else None,
        "best_mean_fitness": max((g["mean_fitness"] for g in gens), default=None),
        "v": read_json(run_dir / "v_eval.json") if (run_dir / "v_eval.json").exists() else None,
        "m": read_json(run_dir / "m_eval.json") if (run_dir / "m_eval.json").exists() else None}
    summary_file = run_dir / "progress.json"
    write_json(summary_file, summary)
    files.append((summary_file, Path("progress.json")))
    if gens:
        settings = run_dir / "wm" / "cmaes" / "settings.json"
        resizes = read_json(settings)["cmaes"].get("resizes", []) if settings.exists() else []
        files.append((learning_curve(gens, run_dir / "learning_curve.png", resizes), Path("learning_curve.png")))
    _copy_tree_atomic(files, Path(progress))
    return [str(rel) for _, rel in files]


def learning_curve(gens: list[dict], path: Path, resizes=()) -> Path:
    """The search's curve from its log lines: the population's mean and best return per generation, and the
    distribution mean's score on unseen tracks where it was measured; the paper's 906 for scale; where the
    search went on as sep-CMA-ES and where it was restarted (`resizes`, the settings' CMAESConfig.resizes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    g = [x["generation"] for x in gens]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(g, [x["mean_fitness"] for x in gens], label="population mean (training tracks)")
    ax.plot(g, [x["best_fitness"] for x in gens], lw=0.8, alpha=0.7, label="best candidate")
    evals = [x for x in gens if "eval_mean" in x]
    if evals:
        ax.errorbar([x["generation"] for x in evals], [x["eval_mean"] for x in evals],
                    yerr=[x["eval_std"] for x in evals], fmt="o", ms=4, capsize=3, label="mean's C, unseen tracks")
    ax.axhline(906, color="0.5", ls="--", lw=0.8, label="paper: 906")
    sep = [x["generation"] for x in gens if x.get("diagonal")]
    if sep:
        ax.axvline(sep[0] - 0.5, color="0.3", ls=":", lw=0.8, label="sep-CMA-ES from here")
    for r in resizes:
        if r[0] < len(gens):
            ax.axvline(r[0] + 0.5, color="C3", ls=":", lw=0.8, label=f"{r[1]} x {r[2]}" + (
                f", std at least {r[3]:g}" if len(r) > 3 and r[3] else "") + " from here")
    ax.set(xlabel="generation", ylabel="return")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def carracing_v2_restore(progress: Path, run_dir: Path) -> bool:
    """On a fresh machine (no RUN_DIR/wm yet), start from the committed progress: the same V and M, and the
    search where it stopped. Returns whether it did."""
    run_dir, progress = Path(run_dir), Path(progress)
    if (run_dir / "wm").exists() or not (progress / "mdnrnn.safetensors").exists():
        return False
    _copy_tree_atomic([(progress / rel, Path(rel)) for rel in _v2_progress_files(progress)], run_dir / "wm")
    for rel in V2_MEASURES:
        if (progress / rel).exists():
            shutil.copy2(progress / rel, run_dir / rel)
    return True


def carracing_v2_controller(cfg: RunConfig, run_dir: Path) -> None:
    """C from scratch by CMA-ES in the real game with the new V and M (RUN_DIR/wm/cmaes; resumes)."""
    wm = Path(run_dir) / "wm"
    open_run(wm, cfg)
    with timed(wm, "controller"):
        stage_controller(cfg, wm, progress=False)


def carracing_v2_ship(run_dir: Path, out: Path, *, command: str, episodes: int = 100, seed: int = 0,
                      workers: int = 2, executor=None) -> dict:
    """Ship the search's current C (the distribution mean after its last generation) with the new V and M to
    `out`: fp16 weights, the search's learning curve (learning_curve.png, cmaes_log.jsonl) and a model card
    with V's and M's measurements, the compute spent (RUN_DIR/compute.json for the stages before C, the log's
    seconds for C) and the score of the stored weights on `episodes` unseen tracks. Returns the card."""
    from .export import export
    run_dir, out = Path(run_dir), Path(out)
    wm = run_dir / "wm"
    log = wm / "cmaes" / "log.jsonl"
    if not log.exists() or not (wm / "controller.safetensors").exists():
        raise WMError(f"{run_dir} has no CMA-ES generations yet ({log}): run scripts/carracing_v2.py --run-dir "
                      f"{run_dir} --stages c first")
    gens = {}
    for line in log.read_text().splitlines():
        g = json.loads(line)
        gens[g["generation"]] = g  # a resumed run may repeat a line; the last one counts
    gens = [gens[k] for k in sorted(gens)]
    c_meta = read_json(wm / "controller.json")
    if c_meta.get("generation") != len(gens):
        raise WMError(f"{wm / 'controller.json'} is from generation {c_meta.get('generation')}, the log has "
                      f"{len(gens)}: wait for the running search to write both, then ship again")
    cfg, c_cfg = read_json(wm / "run.json"), read_json(wm / "cmaes" / "settings.json")["cmaes"]
    measures = {name: read_json(run_dir / f"{name}_eval.json") for name in ("v", "m")
                if (run_dir / f"{name}_eval.json").exists()}
    compute = read_json(run_dir / "compute.json") if (run_dir / "compute.json").exists() else {}
    c_seconds = round(sum(g.get("seconds", 0) for g in gens), 1)
    seconds = {**compute.get("seconds", {}), "controller": c_seconds}
    cores = compute.get("cores", workers)
    # Generations played on another machine record their worker processes (one per core there).
    c_cpu_seconds = sum(g.get("seconds", 0) * g.get("workers", cores) for g in gens)
    search_cores = sorted({g.get("workers", cores) for g in gens})
    packed = run_dir / "series" / "packed" / "lengths.npy"
    epochs = float(measures.get("v", {}).get("epochs", cfg["vae_train"]["epochs"]))
    evals = [{"generation": g["generation"], "mean": round(g["eval_mean"], 1), "std": round(g["eval_std"], 1)}
             for g in gens if "eval_mean" in g]
    extra = {
        "data": {"episodes": V2_AGENT_EPISODES + V2_BROWNIAN_EPISODES, "held_out": 2 * V2_HELD_OUT,
                 "policies": {"agent": V2_AGENT_EPISODES, "brownian": V2_BROWNIAN_EPISODES},
                 "agent_noise": cfg["iterate"]["noise"],
                 "frames": int(np.load(packed).sum()) if packed.exists() else None},
        "actual_training": {
            "collect": (f"{V2_AGENT_EPISODES} + {V2_HELD_OUT} episodes of the previous shipped agent with Gaussian "
                        f"noise {cfg['iterate']['noise']} on its actions and {V2_BROWNIAN_EPISODES} + {V2_HELD_OUT} "
                        f"brownian ones, up to {cfg['collect']['max_steps']:,} steps (the + {V2_HELD_OUT} held out "
                        "to measure V and M)"),
            "vae": (f"{epochs:g} epoch{'' if epochs == 1 else 's'} of batch "
                    f"{cfg['vae_train']['batch_size']} on {V2_AGENT_EPISODES + V2_BROWNIAN_EPISODES} episodes, "
                    f"lr {cfg['vae_train']['lr']}"),
            "mdnrnn": (f"{cfg['mdnrnn_train']['steps']:,} steps of {cfg['mdnrnn_train']['batch_size']} sequences x "
                       f"{cfg['mdnrnn_train']['seq_len']} steps, lr {cfg['mdnrnn_train']['lr']} decaying to "
                       f"{cfg['mdnrnn_train']['min_lr']}"),
            "controller": (f"CMA-ES in the real game, z + h linear, pop {c_cfg['popsize']} x {c_cfg['rollouts']} "
                           "rollouts" + "".join(f", {x[1]} x {x[2]} after generation {x[0]}"
                                                + (f" with every coordinate's std at least {x[3]:g}" if x[3] else "")
                                                for x in c_cfg.get("resizes", []) if len(gens) > x[0])
                           + f", {c_cfg['max_steps']:,}-step episodes, {len(gens)} generations ({c_seconds:.0f} s "
                           f"of generations, " + " or ".join(map(str, search_cores)) + " worker processes, one per "
                           "core; a training episode ended after "
                           f"{c_cfg.get('stall_steps')} steps without a new tile, evaluation episodes never; spread "
                           "over several sittings, resumed from cmaes/state.npz"
                           + (f"; full CMA-ES to generation {c_cfg['diagonal_from']}, sep-CMA-ES (a diagonal "
                              "covariance) from its mean and step size after"
                              if c_cfg.get("diagonal_from") is not None and len(gens) > c_cfg["diagonal_from"] else "")
                           + "); C is the distribution mean after the last generation"),
            "last_generations_mean_fitness": [round(g["mean_fitness"], 1) for g in gens[-10:]],
        },
        "measures": measures,
        "training_seconds": seconds,
        "cpu_hours": round(((sum(seconds.values()) - c_seconds) * cores + c_cpu_seconds) / 3600, 1),
        "compute_note": compute.get("note", "the stages before C were not timed"),
        "learning_curve": {"figure": "learning_curve.png", "log": "cmaes_log.jsonl", "mean_on_unseen_tracks": evals},
    }
    card = export(wm, out, "carracing", episodes=episodes, seed=seed, command=command, workers=workers,
                  progress=False, extra=extra, executor=executor)
    score = card["score"]
    card["status"] = (f"{score['mean']:.0f} +- {score['std']:.0f} over {score['episodes']} unseen tracks, C after "
                      f"generation {len(gens)} of its search; "
                      + ("at least 900: CarRacing solved" if score["mean"] >= 900 else
                         "below 900, the mark of a solved CarRacing: the search goes on"))
    write_json(out / "model_card.json", card)
    learning_curve(gens, out / "learning_curve.png", c_cfg.get("resizes", []))
    write_text(out / "cmaes_log.jsonl", "".join(json.dumps(g) + "\n" for g in gens))
    return card


V2_ABLATION = Path("pretrained") / "carracing" / "v2-ablation"  # its progress between sittings, then its table


def carracing_v2_ablation(cfg: RunConfig, run_dir: Path, ship_dir: Path, *, generations: int = 75,
                          episodes: int = 100, command: str) -> dict:
    """The paper's ablation with the new V and M (RUN_DIR/wm), each controller at the search's settings for
    `generations` generations (75 x 16 x 4 = 4,800 episodes, 5x the first ablation's 960), all three from
    scratch as sep-CMA-ES (diagonal_from=0). Not zh from the search's own first generations: those are full
    CMA-ES, whose replay needs the linear algebra that saved it (wmlib.cmaes), and an ablation of three
    controllers spans sittings and machines. Each controller's progress goes to ship_dir/progress-GENERATIONS
    once it is scored (and with --save-progress), and a fresh clone starts from it; the finished table to
    ship_dir (ablation.json, ablation.md)."""
    run_dir, ship_dir = Path(run_dir), Path(ship_dir)
    wm, work = run_dir / "wm", run_dir / f"ablation-{generations}"
    cfg = replace(cfg, cmaes=replace(cfg.cmaes, generations=generations, diagonal_from=0, resizes=()))
    restored = restore_progress(ship_dir, generations, work)
    if restored:
        log_err(f"[carracing-v2] ablation: resuming {', '.join(restored)} from the progress in {ship_dir}")
    progress = ship_dir / f"progress-{generations}"
    res = ablation(wm, cfg, work, episodes=episodes, kinds=KINDS, log=log_err, progress=False,
                   after_kind=lambda kind: save_progress(work, progress))
    ship(work, ship_dir, command, "scripts/carracing_v2.py (the new V and M, stored in float16)", cfg.seed + 1)
    return res
