"""The paper's CarRacing ablation at the budget of pretrained/carracing's own C, shipped with the book.

    python scripts/ablation_carracing.py --run-dir runs/car-v1 --generations 60
    # rerun the same command after an interrupt: each controller's CMA-ES resumes from its saved state

Three controllers, each trained by CMA-ES in the real game with the run's V and M and the same budget
as the run's own C (scripts/pretrained_carracing.py: pop 16 x 2 rollouts, 1,000-step episodes, the
same seed, so the same training tracks), for GENERATIONS generations, then scored on 100 unseen
tracks (`wmlib.ablation`):

- z:        a = tanh(W z + b)
- z_hidden: a = tanh(W2 tanh(W1 z + b1) + b2), 40 hidden units
- zh:       a = tanh(W [z, h] + b), the run's own C

The zh controller with this configuration is the run's CMA-ES itself, so its first GENERATIONS
generations are copied from RUN/cmaes and replayed (train_cmaes checks every generation's candidates
against the saved checksums) instead of being played again. The work lives in RUN/ablation-GENERATIONS;
the table (ablation.json, ablation.md) is then copied to pretrained/carracing/ablation, where chapter 7
shows it.
"""
import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from wmlib.ablation import KINDS, ablation  # noqa: E402
from wmlib.checkpoint import read_json, save_npz, write_json, write_text  # noqa: E402
from wmlib.errors import WMError  # noqa: E402
from wmlib.pipeline import log_err  # noqa: E402


def run_config(generations: int, workers: int):
    """The run's own configuration (scripts/pretrained_carracing.py), with GENERATIONS for CMA-ES."""
    spec = importlib.util.spec_from_file_location("pretrained_carracing", ROOT / "scripts" / "pretrained_carracing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.config(generations, workers)


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


def ship(work: Path, dest: Path, command: str, run_dir: Path, eval_seed: int) -> None:
    """Copy the finished table to dest (atomic writes), with the command that made it."""
    res = read_json(work / "ablation.json")
    res["command"] = command
    res["weights"] = (f"V and M of {run_dir.name} (the fp32 originals of pretrained/carracing's fp16 V and M); "
                      f"each controller scored on {res['episodes']} unseen tracks (evaluation seed {eval_seed})")
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / "ablation.json", res)
    write_text(dest / "ablation.md", res["markdown"] + "\n")


def main():
    try:
        run()
    except WMError as e:
        raise SystemExit(f"error: {e}") from None


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=Path("runs/car-v1"))
    ap.add_argument("--generations", type=int, default=60)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ship", type=Path, default=ROOT / "pretrained" / "carracing" / "ablation",
                    help="where the finished table goes (chapter 7 reads pretrained/carracing/ablation)")
    args = ap.parse_args()
    if args.generations < 1:
        raise SystemExit(f"--generations must be at least 1, got {args.generations}")
    torch.set_num_threads(1)  # small models on a busy 2-core CPU: one thread is much faster
    cfg = run_config(args.generations, args.workers)
    run_cfg = read_json(args.run_dir / "run.json") if (args.run_dir / "run.json").exists() else None
    if run_cfg is None or run_cfg.get("env") != "carracing":
        raise SystemExit(f"{args.run_dir} is not a CarRacing run of scripts/pretrained_carracing.py (no run.json "
                         "for carracing): pass --run-dir of that run")
    work = args.run_dir / f"ablation-{args.generations}"
    seed_zh(args.run_dir, work / "zh", args.generations)
    ablation(args.run_dir, cfg, work, args.episodes, KINDS, log_err, progress=False)
    command = (f"python scripts/ablation_carracing.py --run-dir runs/{args.run_dir.name} --generations "
               f"{args.generations} --episodes {args.episodes}")
    ship(work, args.ship, command, args.run_dir, cfg.seed + 1)  # wmlib.ablation scores on seed + 1
    print((args.ship / "ablation.md").read_text())


if __name__ == "__main__":
    main()
