"""How pretrained/doom was trained: M at scale on a GPU machine, then the iterative procedure on a CPU.

    python scripts/pretrained_doom.py gpu --run-dir runs/doom-gpu --seconds 470      # one GPU, 16 cores
    python scripts/pretrained_doom.py iterate --run-dir runs/doom-it --from runs/doom-gpu --rounds 4
    python -m wmlib export --env doom --run-dir runs/doom-it --out pretrained/doom

`gpu` fills a time budget (`wmlib.run.recipes.doom_gpu`, `train_doom_gpu`): held-random episodes on every
core until --collect-until seconds, (mu, logvar) series with V (pretrained/doom's V, trained earlier on 1,500
episodes: see its model card), M (LSTM 512) at the paper's batch of 100 windows x 500 steps for as many steps
as fit before --m-until, the dream check's dream side, then CMA-ES in the dream at the paper's pop 64 x 16
until --seconds. Its C is evaluated in the real game on 100 episodes.

`iterate` is the paper's iterative procedure (`recipes.doom_iterate`, `iterate_doom`, each round
`wmlib.run.pipeline.iterate_round`): each round plays --episodes real episodes with the current C (plus
Gaussian noise), continues M on the random episodes and every round's episodes (batch 32 x 250: a CPU's
size), trains a new C in the dream (CMA-ES from scratch, pop 64 x 16) and evaluates it on 100 real
episodes. A C that finds a flaw of M (say, that holding one direction is safe) plays real episodes that
show M the flaw, and the next round's M no longer has it. Every stage resumes after an interrupt.

`ship-round0` ships a round-0 run (the `gpu` stage; on a CPU with --device cpu --workers 2 --m-batch 32
--m-seq 250 and later deadlines) as pretrained/doom/round0 (`recipes.ship_doom_round0`): its M and C in fp16
without V (every round shares pretrained/doom's), and a card with C's survival in the real game, in its own
dream and in the dream of pretrained/doom's M, and the direction it holds. Chapter 9 shows it.

    python scripts/pretrained_doom.py gpu --run-dir runs/doom-round0 --device cpu --workers 2 --m-batch 32 \
        --m-seq 250 --collect-until 720 --m-until 2040 --seconds 3040
    python scripts/pretrained_doom.py ship-round0 --run-dir runs/doom-round0 --out pretrained/doom/round0
"""
import argparse
import sys
from pathlib import Path

from wmlib.run import recipes

SHIPPED_V = Path(__file__).resolve().parents[1] / "pretrained" / "doom"  # V of every stage


def gpu(args):
    cfg = recipes.doom_gpu(args.workers, args.m_batch, args.m_seq, eval_episodes=args.eval_episodes)
    recipes.train_doom_gpu(cfg, args.run_dir, shipped_v=SHIPPED_V, seconds=args.seconds,
                           collect_until_s=args.collect_until, m_until_s=args.m_until,
                           check_episodes=args.check_episodes, device=args.device)


def iterate(args):
    cfg = recipes.doom_iterate(args.rounds, args.workers, random_episodes=args.random_episodes,
                               episodes=args.episodes, noise=args.noise, m_steps=args.m_steps, m_batch=args.m_batch,
                               m_seq=args.m_seq, m_lr=args.m_lr, generations=args.generations,
                               popsize=args.popsize, rollouts=args.rollouts, eval_episodes=args.eval_episodes)
    recipes.iterate_doom(cfg, args.run_dir, args.src, shipped_v=SHIPPED_V, first_round=args.first_round,
                         check_episodes=args.check_episodes, device=args.device)


def cpu_round0(args):
    cfg = recipes.doom_round0_cpu(args.workers, args.m_batch, args.m_seq, popsize=args.popsize,
                                  rollouts=args.rollouts)
    recipes.round0_cpu(cfg, args.run_dir, m_seconds=args.m_seconds, c_seconds=args.c_seconds, device=args.device)


def ship_round0(args):
    command = args.command_line or "python scripts/pretrained_doom.py " + " ".join(sys.argv[1:])
    card = recipes.ship_doom_round0(args.run_dir, args.out, shipped=SHIPPED_V, command=command,
                                    episodes=args.episodes, dream_episodes=args.dream_episodes,
                                    workers=args.workers, note=args.note)
    print(card["survival"], card["actions"])


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
    c = sub.add_parser("cpu-round0", help="go on with a round-0 run on a busy CPU: M, then CMA-ES, within budgets")
    add_shared(c, "runs/doom-round0", workers=2, device="cpu", m_batch=16, m_seq=250)
    c.add_argument("--m-seconds", type=float, default=1500, help="M's training, from this command's start")
    c.add_argument("--c-seconds", type=float, default=600, help="CMA-ES in the dream, after M")
    c.add_argument("--popsize", type=int, default=16)
    c.add_argument("--rollouts", type=int, default=4)
    s = sub.add_parser("ship-round0", help="a round-0 run as pretrained/doom/round0: M and C (fp16), card")
    s.add_argument("--run-dir", type=Path, required=True, help="the gpu stage's run")
    s.add_argument("--out", type=Path, default=SHIPPED_V / "round0")
    s.add_argument("--episodes", type=int, default=100, help="real episodes of the score")
    s.add_argument("--dream-episodes", type=int, default=100)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--note", default="", help="added to the card's 'what'")
    s.add_argument("--command-line", default=None, help="the commands that trained the run, for the card")
    args = ap.parse_args()
    {"gpu": gpu, "iterate": iterate, "cpu-round0": cpu_round0, "ship-round0": ship_round0}[args.stage](args)


if __name__ == "__main__":
    main()
