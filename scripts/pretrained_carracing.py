"""How pretrained/carracing-v1, the first shipped CarRacing agent, was trained: the pipeline's stages with the
paper's models and a data/training budget that fits a 2-core CPU over several sittings. Every stage resumes:
rerun the same command after an interrupt, or with a larger --generations to continue CMA-ES.

    python scripts/pretrained_carracing.py --run-dir runs/car-v1 --generations 60
    python -m wmlib export --env carracing --run-dir runs/car-v1 --out pretrained/carracing-v1

Settings (`wmlib.run.recipes.carracing_v1`; the rest is RunConfig's defaults with the paper's V, M and C): 240
brownian-policy episodes (the default `random_weights` policy leaves the playfield in most episodes), V 1
epoch, M 300 steps of 32 x 999, C (z + h, linear) by CMA-ES in the real game, pop 16 x 2 rollouts, episodes
of 1,000 steps.
"""
import argparse
from pathlib import Path

import torch

from wmlib.run import recipes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=Path("runs/car-v1"))
    ap.add_argument("--generations", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)  # small models on a busy 2-core CPU: one thread is much faster
    recipes.train_carracing_v1(recipes.carracing_v1(args.generations, args.workers), args.run_dir)


if __name__ == "__main__":
    main()
