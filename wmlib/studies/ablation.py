"""The paper's CarRacing ablation: which inputs does C need? Same V, M and CMA-ES budget for each.

    python -m wmlib ablation --weights runs/carracing-gpu --profile gpu --episodes 100

- "z":        V only, a linear controller on z                  (paper: 632 ± 251)
- "z_hidden": V only, one hidden layer of 40 units               (paper: 788 ± 141)
- "zh":       V and M, a linear controller on [z, h] (full model) (paper: 906 ± 21)

Each kind gets its own folder OUT/KIND with links to V and M, its own CMA-ES state (so an
interrupted ablation resumes where it stopped) and its 100-episode score on unseen tracks.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING


from ..checkpoint import link_shared, read_json, write_json, write_text
from ..cmaes import train_cmaes
from ..controller import ControllerConfig
from ..errors import WMError
from ..parallel import open_executor
from ..rollout import evaluate, real_returns, train_seed

if TYPE_CHECKING:  # studies sit below run/: they take its RunConfig, never import it
    from ..run.profiles import RunConfig

KINDS = ("z", "z_hidden", "zh")
PAPER = {"z": "632 ± 251", "z_hidden": "788 ± 141", "zh": "906 ± 21"}
LABELS = {"z": "V only, linear (z)", "z_hidden": "V only, hidden layer (z, 40 units)", "zh": "full: V and M (z, h)"}


def train_real(weights: Path, out: Path, controller: ControllerConfig, cfg: RunConfig, executor, log, progress):
    """CMA-ES in the real game for one controller kind, V and M read from `weights`. Chapter 7."""
    c = cfg.cmaes

    def evaluate_population(solutions, generation):
        seeds = [train_seed(cfg.seed, generation, r) for r in range(c.rollouts)]
        return real_returns(cfg.env, weights, controller, solutions, seeds, max_steps=c.max_steps,
                            stall_steps=c.stall_steps, executor=executor,
                            desc=f"{controller.kind} gen {generation + 1}", progress=progress)

    return train_cmaes(evaluate_population, controller, c, out_dir=out, env=cfg.env, seed=cfg.seed, log=log,
                       progress=progress)


def ablation(weights: Path, cfg: RunConfig, out: Path, *, episodes: int = 100, kinds=KINDS, log=print,
             progress=True, executor=None, after_kind=None) -> dict:
    """Train and score each kind in turn (a kind already scored is read back); after_kind(kind), if given, is
    called once a kind has been newly scored, e.g. to save its state somewhere safe.

    Introduced in chapter 7.
    """
    weights, out = Path(weights), Path(out)
    if cfg.env != "carracing":
        raise WMError(f"the ablation is the paper's CarRacing experiment; got env {cfg.env!r}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise WMError(f"unknown controller kinds {unknown}; the ablation compares {', '.join(KINDS)}")
    rows = []
    with open_executor(executor, cfg.cmaes.workers) as ex:
        for kind in kinds:
            folder = out / kind
            result_path = folder / "scores.json"
            if result_path.exists():
                rows.append(read_json(result_path))
                continue
            link_shared(weights, folder, ("vae.safetensors", "vae.json", "mdnrnn.safetensors", "mdnrnn.json"))
            controller = dataclasses.replace(cfg.controller, kind=kind)
            log(f"ablation {kind}: CMA-ES in the real game, pop {cfg.cmaes.popsize} x {cfg.cmaes.rollouts}, "
                f"{cfg.cmaes.generations} generations")
            train_real(weights, folder, controller, cfg, ex, log, progress)
            score = evaluate(cfg.env, folder, episodes, seed=cfg.seed + 1, max_steps=cfg.eval_max_steps, executor=ex,
                             progress=progress)
            log_path = folder / "cmaes" / "log.jsonl"
            curve = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
            row = {"kind": kind, "mean": score["mean"], "std": score["std"], "episodes": episodes,
                   "generations": cfg.cmaes.generations, "popsize": cfg.cmaes.popsize,
                   "rollouts": cfg.cmaes.rollouts, "curve": [r["mean_fitness"] for r in curve]}
            write_json(result_path, row)
            log(f"ablation {kind}: {row['mean']:.0f} ± {row['std']:.0f} over {episodes} episodes")
            rows.append(row)
            if after_kind is not None:
                after_kind(kind)
    res = {"weights": str(weights), "episodes": episodes, "rows": rows, "markdown": ablation_markdown(rows)}
    write_json(out / "ablation.json", res)
    write_text(out / "ablation.md", res["markdown"] + "\n")
    return res


def ablation_markdown(rows: list[dict]) -> str:
    lines = ["| controller | wmlib | paper |", "|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {LABELS[r['kind']]} | {r['mean']:.0f} ± {r['std']:.0f} | {PAPER[r['kind']]} |")
    if rows:
        r = rows[0]
        lines.append("")
        lines.append(f"Same budget for each: CMA-ES pop {r['popsize']} x {r['rollouts']} rollouts, "
                     f"{r['generations']} generations; scores over {r['episodes']} unseen tracks.")
    return "\n".join(lines)
