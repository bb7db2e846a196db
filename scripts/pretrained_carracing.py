"""How pretrained/carracing was trained: the pipeline's stages with the default profile's models and a
data/training budget that fits a 2-core CPU over several sittings. Every stage resumes: rerun the same
command after an interrupt, or with a larger --generations to continue CMA-ES.

    python scripts/pretrained_carracing.py --run-dir runs/car-v1 --generations 60
    python -m wmlib export --env carracing --run-dir runs/car-v1 --out pretrained/carracing

Settings (the rest is `get_config("carracing", "default")`): 240 brownian-policy episodes (the default
`random_weights` policy leaves the playfield in most episodes), V 1 epoch, M 300 steps of 32 x 999,
C (z + h, linear) by CMA-ES in the real game, pop 16 x 2 rollouts, episodes of 1,000 steps.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wmlib.cmaes import CMAESConfig  # noqa: E402
from wmlib.run.pipeline import open_run, stage_collect, stage_controller, stage_mdnrnn, stage_vae, timed  # noqa: E402
from wmlib.run.profiles import get_config  # noqa: E402


def config(generations: int, workers: int):
    cfg = get_config("carracing", "default", 0)
    cfg.collect.episodes, cfg.collect.policy, cfg.collect.workers = 240, "brownian", workers
    cfg.vae_train.epochs = 1
    cfg.mdnrnn_train.steps = 300
    cfg.cmaes = CMAESConfig(popsize=16, rollouts=2, generations=generations, max_steps=1000, workers=workers,
                            eval_every=0, eval_episodes=0)
    return cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=Path("runs/car-v1"))
    ap.add_argument("--generations", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)  # small models on a busy 2-core CPU: one thread is much faster
    cfg = config(args.generations, args.workers)
    open_run(args.run_dir, cfg)
    for name, stage in (("collect", stage_collect), ("vae", stage_vae), ("mdnrnn", stage_mdnrnn),
                        ("controller", stage_controller)):
        with timed(args.run_dir, name):
            stage(cfg, args.run_dir, progress=False)


if __name__ == "__main__":
    main()
