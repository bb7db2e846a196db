"""Where do a CarRacing agent's points go? How it drives, track by track, and what it is short of 900.

    python benchmarks/carracing_driving.py --weights pretrained/carracing [--episodes 16] [--seed 1] [--mean-z]

A track pays 1,000 / N for each of its N tiles and costs 0.1 a step; the episode ends when the lap is
done (back at the start with at least 95% of the tiles) or after 1,000 steps. A lap finished in T steps
scores about 1,000 - 0.1 T, so 900 needs the lap done, nearly every time: a car still on the road at step
1,000 has lost 100 for the time and whatever tiles it had not reached. This plays --episodes unseen tracks
(the evaluation's tracks and z-noise seeds, `python -m wmlib evaluate --seed S` plays the same) and prints,
per track, the return, the steps, whether the lap was finished, the share of tiles reached, the car's mean
speed, the mean gas, brake and |steer| it sent, and the steps with all four wheels off the road;
then the points short of 900, summed over tracks in three kinds:

- finished: the lap was done, slower than 1,000 steps allow for 900 (the time penalty);
- too slow: not finished at step 1,000, with all four wheels off the road for fewer than 50 steps;
- left the road: not finished, 50 steps or more with all four wheels on the grass (a spin, a corner taken
  too wide, a car that never found the road again).

`--mean-z` plays the same tracks again with C reading V's mean z instead of a sampled one (the authors' agent,
and ours, sample z at every step) and prints the paired difference: how much C has come to rely on that noise.
`--from-eval FILE` plays nothing and splits the shortfall of an `evaluate --json` output (its returns and
steps) into episodes that ended before the 1,000-step cap and the rest: the output does not say why an episode
ended, and a car that drives off the map ends early too (rare once C drives). The last stdout line is one JSON
object.
"""
import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from wmlib.envs import MAX_STEPS

CAP = MAX_STEPS["carracing"]  # the episode cap, 1,000 steps
TARGET = 900.0
OFF_ROAD_STEPS = 50  # steps with all four wheels on the grass that make an unfinished lap "left the road"


def shortfall(returns, finished, off_road_steps=None) -> dict:
    """The points short of TARGET, summed over episodes, by kind (see the module's docstring).

    Without off_road_steps (an evaluate --json output, where `finished` is an episode that ended before the
    cap) the kinds are "ended_before_cap" and "ran_to_the_cap"."""
    returns, finished = np.asarray(returns, float), np.asarray(finished, bool)
    gap = np.maximum(TARGET - returns, 0.0)
    if off_road_steps is None:
        kinds = {"ended_before_cap": finished, "ran_to_the_cap": ~finished}
    else:
        kinds = {"finished": finished}
        slow = ~finished & (np.asarray(off_road_steps) < OFF_ROAD_STEPS)
        kinds["too_slow"], kinds["left_the_road"] = slow, ~finished & ~slow
    return {"episodes": len(returns), "mean": round(float(returns.mean()), 1),
            "short_of_900": round(float(gap.mean()), 1),  # the mean's distance to 900 if no track scored above
            "kinds": {k: {"episodes": int(m.sum()), "mean_return": round(float(returns[m].mean()), 1) if m.any()
                          else None, "points_short_per_track": round(float(gap[m].sum() / len(returns)), 1)}
                      for k, m in kinds.items()}}


def drive(job) -> dict:
    """One evaluation episode, alone in its process, recording how the car drives."""
    weights, seed, episode, mean_z = job
    import torch
    from wmlib.agent import load_agent
    from wmlib.envs import carracing_action, make_env
    from wmlib.rollout import eval_seed
    torch.set_num_threads(1)
    agent = load_agent(Path(weights), "carracing")
    if mean_z:
        agent.vae.sample = lambda mu, logvar, generator=None: mu
    env = make_env("carracing", CAP)
    game = env.unwrapped
    s = eval_seed(seed, episode)
    frame, _ = env.reset(seed=s)
    agent.reset(1, [s])
    total, rows, done = 0.0, [], False
    while not done:
        a = agent.act(frame[None])[0]
        steer, gas, brake = carracing_action(a)
        frame, r, terminated, truncated, info = env.step(a)
        total += r
        off = all(len(w.tiles) == 0 for w in game.car.wheels)
        rows.append((float(np.hypot(*game.car.hull.linearVelocity)), gas, brake, abs(steer), off))
        done = terminated or truncated or len(rows) >= CAP
    lap = bool(info.get("lap_finished", False))  # the game's own flag; a car off the map also terminates
    tiles = game.tile_visited_count / len(game.track)
    env.close()
    r = np.asarray(rows, float)
    return {"episode": episode, "return": round(total, 1), "steps": len(rows), "finished": lap,
            "tiles": round(tiles, 3), "track_tiles": len(game.track), "speed": round(r[:, 0].mean(), 1),
            "gas": round(r[:, 1].mean(), 3),
            "brake": round(r[:, 2].mean(), 3), "abs_steer": round(r[:, 3].mean(), 3),
            "off_road_steps": int(r[:, 4].sum())}


def play(weights, episodes, seed, mean_z, workers) -> list:
    jobs = [(str(weights), seed, i, mean_z) for i in range(episodes)]
    with ProcessPoolExecutor(workers) as ex:
        return list(ex.map(drive, jobs))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=Path("pretrained/carracing"))
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1, help="evaluation seed (the tracks of evaluate --seed)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mean-z", action="store_true", help="also play each track with C reading V's mean z")
    ap.add_argument("--from-eval", type=Path, metavar="FILE", help="split an evaluate --json output; play nothing")
    args = ap.parse_args(argv)
    if args.from_eval:
        text = args.from_eval.read_text()
        ev = json.loads(text[text.index("{"):])
        if "steps" not in ev:
            raise SystemExit(f"{args.from_eval} has no per-episode steps: evaluate --json writes them since they "
                             "were added; evaluate again")
        out = {"weights": ev.get("weights"), "seed": ev.get("seed"),
               **shortfall(ev["returns"], np.asarray(ev["steps"]) < CAP)}
        print(json.dumps(out))
        return out
    if args.episodes < 1:
        raise SystemExit(f"--episodes must be at least 1, got {args.episodes}")
    rows = play(args.weights, args.episodes, args.seed, False, args.workers)
    cols = ("return", "steps", "finished", "tiles", "track_tiles", "speed", "gas", "brake", "abs_steer",
            "off_road_steps")
    print(f"{'track':>5} " + " ".join(f"{c[:9]:>9}" for c in cols))
    for row in rows:
        print(f"{row['episode']:>5} " + " ".join(f"{str(row[c]):>9}" for c in cols))
    means = {c: round(float(np.mean([row[c] for row in rows])), 3) for c in cols}
    print("mean  " + " ".join(f"{means[c]:>9}" for c in cols))
    out = {"weights": str(args.weights), "seed": args.seed, "means": means,
           **shortfall([r["return"] for r in rows], [r["finished"] for r in rows], [r["off_road_steps"] for r in rows]),
           "tracks": rows}
    for kind, k in out["kinds"].items():
        print(f"{kind:>14}: {k['episodes']:3d} tracks, mean {k['mean_return']}, "
              f"{k['points_short_per_track']} of the {out['short_of_900']} points short of 900")
    if args.mean_z:
        mz = play(args.weights, args.episodes, args.seed, True, args.workers)
        diff = np.array([b["return"] - a["return"] for a, b in zip(rows, mz)])
        out["mean_z"] = {"mean": round(float(np.mean([r["return"] for r in mz])), 1),
                         "finished": float(np.mean([r["finished"] for r in mz])),
                         "paired_difference": round(float(diff.mean()), 1),
                         "se": round(float(diff.std(ddof=1) / np.sqrt(len(diff))), 1) if len(diff) > 1 else None}
        print(f"C reading V's mean z instead of a sample: {out['mean_z']['mean']} "
              f"({out['mean_z']['paired_difference']:+} +- {out['mean_z']['se']} paired)")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(main() and 0)
