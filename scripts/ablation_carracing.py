"""The paper's CarRacing ablation with the first shipped V and M (pretrained/carracing-v1), shipped with them.

    python scripts/ablation_carracing.py --generations 30
    # rerun the same command after an interrupt, on this machine or a fresh clone: it resumes

Three controllers, each trained from scratch by CMA-ES in the real game with the same V, M and budget
(the settings of the first shipped C, scripts/pretrained_carracing.py: pop 16 x 2 rollouts, 1,000-step
episodes, the same seed, so the same training tracks) for GENERATIONS generations, then scored on
100 unseen tracks (`wmlib.run.recipes.carracing_ablation` and `ablation_carracing`, which call
`wmlib.studies.ablation`):

- z:        a = tanh(W z + b)
- z_hidden: a = tanh(W2 tanh(W1 z + b1) + b2), 40 hidden units
- zh:       a = tanh(W [z, h] + b), the shipped C's architecture

The work lives in runs/carracing-ablation-GENERATIONS (git ignores runs/). Its progress, each
controller's CMA-ES state (the fitness values cma was told, a few kB) and finished score, is copied to
pretrained/carracing-v1/ablation/progress-GENERATIONS after every controller and with --save-progress, and
a fresh clone starts from it, so the ablation can be spread over sittings on different machines; a
larger --generations goes on from the progress of a smaller one (its generations come first). The
finished table (ablation.json, ablation.md) goes to pretrained/carracing-v1/ablation, where chapter 7
shows it. (The ablation with the V and M shipped now is `scripts/carracing_v2.py --stages ablation`.)

With --weights RUN, a run of scripts/pretrained_carracing.py, V and M come from that run instead, and
the zh controller, which with these settings is the run's own CMA-ES, starts from the run's first
GENERATIONS generations (replayed, checked against their saved checksums, no episode played).
"""
import argparse
from pathlib import Path

import torch

from wmlib.errors import WMError
from wmlib.run import recipes

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pretrained" / "carracing-v1"  # the first shipped V, M and C, with this ablation


def main():
    try:
        run()
    except WMError as e:
        raise SystemExit(f"error: {e}") from None


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=30)
    ap.add_argument("--weights", type=Path, default=SHIPPED,
                    help="V and M: pretrained/carracing-v1 (default) or a run of scripts/pretrained_carracing.py")
    ap.add_argument("--work", type=Path, default=None,
                    help="working folder (default runs/carracing-ablation-G, or RUN/ablation-G with --weights RUN)")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ship", type=Path, default=SHIPPED / "ablation",
                    help="where the table and the progress go (chapter 7 reads pretrained/carracing-v1/ablation)")
    ap.add_argument("--save-progress", action="store_true",
                    help="only copy the work folder's progress to the ship folder (for stopping mid-way), then exit")
    args = ap.parse_args()
    if args.generations < 1:
        raise SystemExit(f"--generations must be at least 1, got {args.generations}")
    weights = args.weights
    shipped_vm = weights.resolve() == SHIPPED.resolve()  # the saved progress is of the shipped V and M only
    work = args.work or (weights / f"ablation-{args.generations}" if (weights / "run.json").exists()
                         else ROOT / "runs" / f"carracing-ablation-{args.generations}")
    if args.save_progress:
        if not shipped_vm:
            raise SystemExit("--save-progress keeps the progress of the shipped V and M only; drop --weights")
        progress = args.ship / f"progress-{args.generations}"
        saved = recipes.save_progress(work, progress)
        print(f"saved the progress of {', '.join(saved) or 'no controller'} to {progress}")
        return
    torch.set_num_threads(1)  # small models on a busy 2-core CPU: one thread is much faster
    command = f"python scripts/ablation_carracing.py --generations {args.generations} --episodes {args.episodes}"
    if not shipped_vm:
        command += f" --weights {weights}"
    res = recipes.ablation_carracing(weights, recipes.carracing_ablation(args.generations, args.workers), work=work,
                                     ship_dir=args.ship, shipped_vm=shipped_vm, episodes=args.episodes,
                                     command=command)
    print(res["markdown"])


if __name__ == "__main__":
    main()
