"""How pretrained/doom was trained: M at scale on a GPU machine, then the iterative procedure on a CPU.

    python scripts/pretrained_doom.py gpu --run-dir runs/doom-gpu --seconds 470      # one GPU, 16 cores
    python scripts/pretrained_doom.py iterate --run-dir runs/doom-it --from runs/doom-gpu --rounds 4
    python -m wmlib export --env doom --run-dir runs/doom-it --out pretrained/doom

`gpu` fills a time budget: held-random episodes on every core until --collect-until seconds, (mu, logvar)
series with V (pretrained/doom's V, trained earlier on 1,500 episodes: see its model card), M (LSTM 512) at
the paper's batch of 100 windows x 500 steps for as many steps as fit before --m-until, the dream check's
dream side, then CMA-ES in the dream at the paper's pop 64 x 16 until --seconds. Its C is evaluated in the
real game on 100 episodes.

`iterate` is the paper's iterative procedure: each round plays --episodes real episodes with the current
C (plus Gaussian noise), continues M on the random episodes and every round's episodes (batch 32 x 250: a
CPU's size), trains a new C in the dream (CMA-ES from scratch, pop 64 x 16) and evaluates it on 100 real
episodes. A C that finds a flaw of M (say, that holding one direction is safe) plays real episodes that
show M the flaw, and the next round's M no longer has it. Every stage resumes after an interrupt.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wmlib.checkpoint import load_model, write_json  # noqa: E402
from wmlib.collect import collect  # noqa: E402
from wmlib.studies.dreamcheck import dream_check  # noqa: E402
from wmlib.mdnrnn import MDNRNN, MDNRNNConfig  # noqa: E402
from wmlib.parallel import make_executor  # noqa: E402
from wmlib.run.pipeline import open_run, stage_controller_dream  # noqa: E402
from wmlib.cmaes import CMAESConfig  # noqa: E402
from wmlib.train_mdnrnn import MDNTrainConfig
from wmlib.run.profiles import get_config
from wmlib.rollout import evaluate  # noqa: E402
from wmlib.series import encode_series, pack_series  # noqa: E402
from wmlib.train_mdnrnn import train_mdnrnn  # noqa: E402
from wmlib.checkpoint import pick_device  # noqa: E402
from wmlib.vae import ConvVAE, VAEConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config("doom", "default", 0)
FIXED_POLICIES = ("noop", "left", "right", "random", "held_random")  # the dream check's, minus random C
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f} s] {msg}", flush=True)


def use_shipped_v(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("vae.safetensors", "vae.json"):
        if not (run_dir / name).exists():
            shutil.copy(ROOT / "pretrained/doom" / name, run_dir / name)


def encode(run_dir: Path, device, loaders=None) -> Path:
    vae, _ = load_model(ConvVAE, VAEConfig, run_dir, "vae", "doom", device)
    encode_series(vae, run_dir / "vae.safetensors", run_dir / "episodes", run_dir / "series", progress=False,
                  loaders=loaders)
    return pack_series(run_dir / "series")


def dream_side(run_dir: Path, device, taus=(1.0, 1.15), episodes=100) -> dict:
    """The dream half of the dream check (the real half does not change with M), as {"policy @ tau": [mean, std]}."""
    rows = {}
    for tau in taus:
        res = dream_check(run_dir, episodes, tau, 0, 2100, device=device, policies=FIXED_POLICIES, real=False)
        rows.update({f"{p} @ {tau}": [round(r["dream_mean"], 1), round(r["dream_std"], 1)]
                     for p, r in res["policies"].items()})
    return rows


def gpu(args):
    dev = pick_device(args.device)
    run, workers = args.run_dir, args.workers
    open_run(run, CFG)  # run.json: what `python -m wmlib export` and `evaluate` read, as in iterate
    use_shipped_v(run)
    summary = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else str(dev), "workers": workers}
    ex = make_executor(workers)
    try:  # collect in chunks of at most 40 s, so that the deadline holds whatever the machine's speed
        n, step = 0, 4 * workers
        while True:
            t = time.monotonic()
            n += step
            collect("doom", run / "episodes", n, 0, "held_random", 2100, 100, workers, executor=ex, progress=False)
            rate = step / (time.monotonic() - t)
            log(f"{n} episodes ({rate:.1f} per second)")
            step = int(rate * min(args.collect_until - (time.monotonic() - T0), 40))
            if step < workers:
                break
    finally:
        ex.shutdown()
    packed = encode(run, dev, loaders=min(16, workers))
    summary["episodes"], summary["frames"] = n, int(np.load(packed / "lengths.npy").sum())
    log(f"{summary['frames']} frames encoded")

    base = dict(batch_size=args.m_batch, seq_len=args.m_seq, lr=1e-3, min_lr=1e-4, checkpoint_every_s=120)
    for probe in (20, 40):  # the second probe times steps without the start-up cost
        t = time.monotonic()
        train_mdnrnn(packed, run, "doom", CFG.mdnrnn, MDNTrainConfig(steps=probe, lr_decay=1.0, **base), 0, dev,
                     False, log)
    per_step = (time.monotonic() - t) / 20
    steps = 40 + max(0, int((args.m_until - (time.monotonic() - T0)) / per_step * 0.95))
    decay = 0.05 ** (1 / steps)  # lr from 1e-3 to ~1.5e-4 by the last step
    log(f"M: {per_step * 1e3:.1f} ms per step of {args.m_batch} x {args.m_seq}, training to step {steps}")
    train_mdnrnn(packed, run, "doom", CFG.mdnrnn, MDNTrainConfig(steps=steps, lr_decay=decay, **base), 0, dev,
                 False, log)
    summary["mdnrnn"] = {"steps": steps, "ms_per_step": round(per_step * 1e3, 1), "batch": args.m_batch,
                         "seq_len": args.m_seq}
    summary["dream"] = dream_side(run, dev, episodes=args.check_episodes)
    log(f"dream check, dream side: {summary['dream']}")

    gens, per_gen = 0, None
    while per_gen is None or time.monotonic() - T0 + per_gen < args.seconds:
        t = time.monotonic()
        target = gens + 1 if per_gen is None else \
            gens + max(1, int((args.seconds - (time.monotonic() - T0)) / per_gen * 0.9))
        CFG.cmaes = CMAESConfig(popsize=64, rollouts=16, generations=target, eval_every=0, where="dream")
        stage_controller_dream(CFG, run, False, dev)
        per_gen, gens = (time.monotonic() - t) / (target - gens), target
    summary["cmaes_generations"] = gens
    res = evaluate("doom", run, args.eval_episodes, seed=0, workers=workers, progress=False)
    summary["real"] = [res["mean"], res["std"]]
    log(f"real game: {res['mean']:.1f} +- {res['std']:.1f} over {args.eval_episodes} episodes")
    write_json(run / "gpu_summary.json", summary)


def start_from(run: Path, src: Path):
    """Copy V, M, C and initial_z from the GPU run (M continues from these weights: see iterate)."""
    use_shipped_v(run)
    for name in ("mdnrnn.safetensors", "mdnrnn.json", "controller.safetensors", "controller.json",
                 "initial_z.npz"):  # initial_z.npz is written again when the episodes are encoded
        if not (run / name).exists() and (name != "initial_z.npz" or (src / name).exists()):
            shutil.copy(src / name, run / name)


def iterate(args):
    run, dev = args.run_dir, pick_device(args.device)
    open_run(run, CFG)  # run.json: what `python -m wmlib export` reads
    start_from(run, args.src)
    src_m, src_meta = load_model(MDNRNN, MDNRNNConfig, args.src, "mdnrnn", "doom")  # the first round continues it
    m_step = src_meta.get("steps", 0)
    log(f"random episodes 0..{args.random_episodes - 1} (seed 0, as the GPU run's first ones)")
    collect("doom", run / "episodes", args.random_episodes, 0, "held_random", 2100, 100, args.workers,
            progress=False)
    for k in range(args.first_round, args.rounds + 1):
        if (run / f"round{k}" / "round.json").exists():
            continue
        t = time.monotonic()
        n = args.random_episodes + k * args.episodes
        log(f"round {k}: episodes {n - args.episodes}..{n - 1} with the current C (noise {args.noise})")
        collect("doom", run / "episodes", n, 0, "agent", 2100, 0, args.workers, progress=False,
                weights=str(run), noise=args.noise)
        packed = encode(run, dev, loaders=args.workers)
        train = MDNTrainConfig(steps=m_step + (k - args.first_round + 1) * args.m_steps, batch_size=args.m_batch,
                               seq_len=args.m_seq,
                               lr=args.m_lr, min_lr=args.m_lr, checkpoint_every_s=120)
        train_mdnrnn(packed, run, "doom", CFG.mdnrnn, train, 0, dev, False, log, start=src_m, start_step=m_step)
        dream = dream_side(run, dev, taus=(1.15,), episodes=args.check_episodes)
        log(f"round {k}: dream check, dream side: {dream}")
        CFG.cmaes = CMAESConfig(popsize=args.popsize, rollouts=args.rollouts, generations=args.generations,
                                eval_every=0, where="dream")
        stage_controller_dream(CFG, run, False, dev, state_name=f"cmaes_iter{k}", seed=1_000_003 * k)
        res = evaluate("doom", run, args.eval_episodes, seed=0, workers=args.workers, progress=False)
        virtual = json.loads((run / "controller.json").read_text())["mean_fitness"]
        out = {"round": k, "episodes": n, "m_steps": train.steps, "m_batch": [args.m_batch, args.m_seq],
               "dream": dream, "virtual_mean_fitness": virtual, "real_mean": res["mean"], "real_std": res["std"],
               "real_episodes": args.eval_episodes, "seconds": round(time.monotonic() - t)}
        log(f"round {k}: {out}")
        # each round's V, M, C and initial_z, ready for export (and round.json, last: the round is done)
        snap = run / f"round{k}"
        snap.mkdir(exist_ok=True)
        for name in ("vae.safetensors", "vae.json", "mdnrnn.safetensors", "mdnrnn.json", "controller.safetensors",
                     "controller.json", "initial_z.npz"):
            shutil.copy(run / name, snap / name)
        write_json(snap / "round.json", out)


def add_shared(p, run_dir: str, workers: int, device, m_batch: int, m_seq: int):
    """The options both stages take, with each stage's defaults."""
    p.add_argument("--run-dir", type=Path, default=Path(run_dir))
    p.add_argument("--workers", type=int, default=workers)
    p.add_argument("--device", default=device)
    p.add_argument("--m-batch", type=int, default=m_batch)
    p.add_argument("--m-seq", type=int, default=m_seq)
    p.add_argument("--check-episodes", type=int, default=100)
    p.add_argument("--eval-episodes", type=int, default=100)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    g = sub.add_parser("gpu", help="collect, M at scale, CMA-ES in the dream, within a time budget")
    add_shared(g, "runs/doom-gpu", workers=16, device=None, m_batch=100, m_seq=500)
    g.add_argument("--seconds", type=float, default=470, help="when CMA-ES stops (from the start)")
    g.add_argument("--collect-until", type=float, default=130)
    g.add_argument("--m-until", type=float, default=400)
    i = sub.add_parser("iterate", help="rounds of the iterative procedure on a CPU")
    add_shared(i, "runs/doom-it", workers=2, device="cpu", m_batch=32, m_seq=250)
    i.add_argument("--from", dest="src", type=Path, default=Path("runs/doom-gpu"), help="the gpu stage's run")
    i.add_argument("--rounds", type=int, default=4, help="the last round")
    i.add_argument("--first-round", type=int, default=1, help="continue a run whose rounds before this one "
                   "happened elsewhere: --from holds their V, M, C, and the run's episodes theirs")
    i.add_argument("--episodes", type=int, default=400, help="real episodes per round, played by C")
    i.add_argument("--noise", type=float, default=0.5)
    i.add_argument("--m-steps", type=int, default=300, help="M's steps per round (32 x 250)")
    i.add_argument("--m-lr", type=float, default=1e-4)
    i.add_argument("--generations", type=int, default=20)
    i.add_argument("--popsize", type=int, default=64)
    i.add_argument("--rollouts", type=int, default=16)
    i.add_argument("--random-episodes", type=int, default=1500)
    args = ap.parse_args()
    gpu(args) if args.stage == "gpu" else iterate(args)


if __name__ == "__main__":
    main()
