"""The second CarRacing agent (pretrained/carracing, its search still going on): data the agent sees, V, M, then C.

    nohup nice -n 19 python scripts/carracing_v2.py --run-dir runs/car-v2 >> runs/car-v2.log 2>&1 &

Settings and procedure: `wmlib.run.recipes.carracing_v2` (600 episodes of the first shipped agent,
pretrained/carracing-v1, with noise 0.15 and 400 brownian ones, 20 of each held out; V from scratch, M on the
same episodes, C by CMA-ES in the real game). Stages, each resuming where it stopped (rerun the same command
after an interrupt):
  v  collect the episodes (only the missing ones), train V, write RUN_DIR/v_eval.json (V's error on held-out
     agent frames against training frames);
  m  encode the episodes with V, train M in RUN_DIR/wm, write RUN_DIR/m_eval.json (held-out against training);
  c  CMA-ES in RUN_DIR/wm/cmaes, with V and M stored in float16 as they will be shipped;
  ablation  the paper's ablation with the new V and M, at the search's settings for --ablation-generations
     generations per controller (z, z_hidden and zh, each from scratch as sep-CMA-ES, which resumes on any
     machine), each scored on 100 unseen tracks: its progress and table in pretrained/carracing/v2-ablation
     (not in the default --stages).
Between sittings: `--save-progress` copies V, M (float16, ~10 MB), their measurements and the CMA-ES state
(a few kB) to pretrained/carracing/v2-progress, which is committed; on a fresh clone, stage c starts from
there (`--progress` names another folder).

    python scripts/carracing_v2.py --run-dir runs/car-v2 --save-progress   # before a sitting ends
    nohup nice -n 19 python scripts/carracing_v2.py --run-dir runs/car-v2 --stages c &   # on a fresh clone

Ship the C of the last generation with the new V and M (done at generation 250, 806; again when the mean's
score on unseen tracks passes a milestone, 850, then 900): fp16 weights, the learning curve, and a model card
with the compute spent and the score of the stored weights on 100 unseen tracks (a few minutes on 2 cores):

    python scripts/carracing_v2.py --run-dir runs/car-v2 --ship pretrained/carracing
"""
import argparse
from pathlib import Path

import torch

from wmlib.run import recipes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=Path("runs/car-v2"))
    ap.add_argument("--stages", default="v,m,c", help="comma-separated, of v, m, c, ablation (default: v,m,c)")
    ap.add_argument("--agent-weights", type=Path, default=Path("pretrained/carracing-v1"),
                    help="the agent that plays the on-policy episodes (the first shipped one)")
    ap.add_argument("--v-epochs", type=float, default=1)
    ap.add_argument("--m-steps", type=int, default=1500)
    ap.add_argument("--generations", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--progress", type=Path, default=Path("pretrained/carracing/v2-progress"),
                    help="the committed progress of the search (V, M, the CMA-ES state)")
    ap.add_argument("--save-progress", action="store_true", help="copy the run's progress there, and stop")
    ap.add_argument("--ablation-generations", type=int, default=75, help="CMA-ES generations per ablation controller")
    ap.add_argument("--ablation-dir", type=Path, default=recipes.V2_ABLATION,
                    help="the ablation's progress and table (default pretrained/carracing/v2-ablation)")
    ap.add_argument("--ship", type=Path, metavar="OUT",
                    help="ship the last generation's C with V and M to OUT, scored on unseen tracks, and stop")
    ap.add_argument("--episodes", type=int, default=100, help="unseen tracks that --ship scores on")
    ap.add_argument("--seed", type=int, default=0, help="evaluation seed of --ship")
    args = ap.parse_args()
    if args.ship:
        command = (f"python scripts/carracing_v2.py --run-dir {args.run_dir} && python scripts/carracing_v2.py "
                   f"--run-dir {args.run_dir} --ship {args.ship} --episodes {args.episodes} --seed {args.seed}")
        card = recipes.carracing_v2_ship(args.run_dir, args.ship, command=command, episodes=args.episodes,
                                         seed=args.seed, workers=args.workers)
        print(f"shipped to {args.ship}: {card['status']}")
        return
    if args.save_progress:
        saved = recipes.carracing_v2_save(args.run_dir, args.progress)
        print(f"saved {len(saved)} files to {args.progress}: {', '.join(saved)}")
        work = args.run_dir / f"ablation-{args.ablation_generations}"
        if work.exists():
            kinds = recipes.save_progress(work, args.ablation_dir / f"progress-{args.ablation_generations}")
            print(f"saved the ablation's progress of {', '.join(kinds) or 'no controller'} to {args.ablation_dir}")
        return
    stages = args.stages.split(",")
    if set(stages) - {"v", "m", "c", "ablation"}:
        ap.error(f"--stages takes v, m, c and ablation, got {args.stages!r}")
    torch.set_num_threads(1)  # small models on a busy 2-core CPU: one thread is much faster
    cfg = recipes.carracing_v2(args.workers, args.v_epochs, args.m_steps, args.generations)
    if "v" in stages:
        recipes.carracing_v2_world_model(cfg, args.run_dir, agent_weights=args.agent_weights)
    if "m" in stages:
        recipes.carracing_v2_m(cfg, args.run_dir)
    if "c" in stages:
        if recipes.carracing_v2_restore(args.progress, args.run_dir):
            print(f"started from the committed progress in {args.progress}")
        recipes.carracing_v2_controller(cfg, args.run_dir)
    if "ablation" in stages:
        if recipes.carracing_v2_restore(args.progress, args.run_dir):
            print(f"started from the committed progress in {args.progress}")
        command = (f"python scripts/carracing_v2.py --run-dir {args.run_dir} --stages ablation "
                   f"--ablation-generations {args.ablation_generations}")
        res = recipes.carracing_v2_ablation(cfg, args.run_dir, args.ablation_dir,
                                            generations=args.ablation_generations, command=command)
        print(res["markdown"])


if __name__ == "__main__":
    main()
