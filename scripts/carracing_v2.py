"""The next CarRacing world model (work in progress): data the agent sees, and a V trained on it.

    nohup nice -n 19 python scripts/carracing_v2.py --run-dir runs/car-v2 >> runs/car-v2.log 2>&1 &

Settings and procedure: `wmlib.run.recipes.carracing_v2` and `carracing_v2_world_model` (600 episodes of the
shipped agent with noise 0.15 and 400 brownian ones, 20 of each held out; V from scratch). Everything
resumes: rerun the same command after an interrupt (collection writes only the missing episodes, V continues
from its last saved block). It ends by writing RUN_DIR/v_eval.json: V's error on held-out agent frames
against its training frames, the number the V must bring close to 1x before M and C are trained on it.
"""
import argparse
from pathlib import Path

import torch

from wmlib.run import recipes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=Path("runs/car-v2"))
    ap.add_argument("--agent-weights", type=Path, default=Path("pretrained/carracing"),
                    help="the agent that plays the on-policy episodes")
    ap.add_argument("--v-epochs", type=float, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)  # small models on a busy 2-core CPU: one thread is much faster
    cfg = recipes.carracing_v2(args.workers, args.v_epochs)
    recipes.carracing_v2_world_model(cfg, args.run_dir, agent_weights=args.agent_weights)


if __name__ == "__main__":
    main()
