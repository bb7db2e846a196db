"""The paper's temperature table: one controller trained in the dream per tau, scored in the dream
(virtual) and in the real game (actual), 100 episodes each.

Each tau gets its own folder OUT/tau_X with links to V, M and the first frames, its CMA-ES state
and its scores, so an interrupted sweep resumes where it stopped, and a sweep asked for more
generations continues each tau's CMA-ES from where it ended.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..checkpoint import atomic_path, link_shared, read_json, write_json, write_text
from ..cmaes import train_cmaes
from ..dream import DreamConfig, DreamModel, dream_returns
from ..errors import WMError
from ..rollout import eval_seed, evaluate, train_seed

if TYPE_CHECKING:  # studies sit below run/: they take its RunConfig, never import it
    from ..run.profiles import RunConfig

PAPER = {0.1: ("2086 ± 140", "193 ± 58"), 0.5: ("2060 ± 277", "196 ± 50"), 1.0: ("1145 ± 690", "868 ± 511"),
         1.15: ("918 ± 546", "1092 ± 556"), 1.3: ("732 ± 269", "753 ± 139")}
PAPER_TAUS = ",".join(f"{tau:g}" for tau in PAPER)  # the paper's table, the default of --taus
# What ship_sweep copies of each tau's folder: C, how its CMA-ES went, and its scores (not V and M again)
SHIPPED = ("controller.safetensors", "controller.json", "cmaes/log.jsonl", "scores.json")


def parse_taus(text: str) -> list[float]:
    """--taus: comma-separated temperatures, each checked as DreamConfig checks a tau."""
    try:
        taus = [float(t) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise WMError(f"--taus must be comma-separated numbers such as {PAPER_TAUS}, got {text!r}") from e
    if not taus:
        raise WMError(f"--taus must list temperatures > 0 such as {PAPER_TAUS}, got {text!r}")
    for tau in taus:
        try:
            DreamConfig(tau=tau)
        except ValueError as e:
            raise WMError(f"--taus {text!r}: {e}") from e
    return taus


def tau_dir(out: Path, tau: float) -> Path:
    """The folder of tau's controller in a sweep (or in a weights folder's tau_controllers/). Chapter 9."""
    return Path(out) / f"tau_{tau:g}"


def tau_sweep(weights: Path, taus: list[float], cfg: RunConfig, *, out: Path, episodes: int = 100, seed: int = 0,
              device="cpu", workers=None, log=print, progress=True, executor=None) -> dict:
    """One C per tau, trained in the dream cfg.dream at that tau; the other settings are cfg's."""
    weights, out = Path(weights), Path(out)
    dreams = [dataclasses.replace(cfg.dream, tau=tau) for tau in taus]  # checks every tau before any work
    DreamModel(weights, "doom", device)  # validates the weights before any work
    c, d = cfg.cmaes, cfg.dream
    rows = []
    for tau, dream in zip(taus, dreams):
        folder = tau_dir(out, tau)
        result_path = folder / "scores.json"
        if result_path.exists():
            row = read_json(result_path)
            done = row.get("generations")  # None: a sweep from before rows recorded it, taken as finished
            if done is None or done >= cfg.cmaes.generations:
                rows.append(row)
                continue
        link_shared(weights, folder)
        model = DreamModel(folder, "doom", device, obs=cfg.controller.kind)
        log(f"tau {tau}: CMA-ES in the dream, pop {c.popsize} x {c.rollouts}, {c.generations} generations")
        controller = train_cmaes(
            lambda sols, g: dream_returns(model, cfg.controller, sols, rollouts=c.rollouts, dream=dream,
                                          seed=train_seed(seed, g, 0)),
            cfg.controller, c, out_dir=folder, env="doom", seed=seed, log=log, progress=progress)
        virtual = dream_returns(model, cfg.controller, controller.get_flat()[None], rollouts=episodes, dream=dream,
                                seed=eval_seed(seed, 1))[0]
        actual = evaluate("doom", folder, episodes, seed=seed, workers=workers, executor=executor, progress=progress)
        row = {"tau": tau, "virtual_mean": float(virtual.mean()), "virtual_std": float(virtual.std()),
               "actual_mean": actual["mean"], "actual_std": actual["std"], "episodes": episodes,
               "generations": cfg.cmaes.generations}
        write_json(result_path, row)
        log(f"tau {tau}: virtual {row['virtual_mean']:.0f} ± {row['virtual_std']:.0f}, actual "
            f"{row['actual_mean']:.0f} ± {row['actual_std']:.0f}")
        rows.append(row)
    # A tau read back may have run more generations than asked now: say what the rows ran.
    gens = sorted({r.get("generations", c.generations) for r in rows})
    res = {"weights": str(weights), "episodes": episodes, "seed": seed,
           "cmaes": {"popsize": c.popsize, "rollouts": c.rollouts,
                     "generations": gens[0] if len(gens) == 1 else gens, "sigma0": c.sigma0},
           "dream": {"max_steps": d.max_steps, "done_mode": d.done_mode}, "rows": rows,
           "markdown": sweep_markdown(rows)}
    write_json(out / "tau_sweep.json", res)
    write_text(out / "tau_sweep.md", sweep_file_text(res))
    return res


def ship_sweep(out: Path, weights: Path) -> dict:
    """Copy a finished sweep in `out` into the weights folder it was run on: tau_sweep.json and .md,
    and tau_controllers/tau_X/ with each tau's C, CMA-ES log and scores (what chapters 8 and 9 read)."""
    out, weights = Path(out), Path(weights)
    if not (out / "tau_sweep.json").exists():
        raise WMError(f"{out} holds no finished tau sweep (no tau_sweep.json); run `python -m wmlib tau-sweep "
                      f"--out {out}` to the end first")
    res = read_json(out / "tau_sweep.json")
    missing = [str(tau_dir(out, r["tau"]) / name) for r in res["rows"] for name in SHIPPED
               if not (tau_dir(out, r["tau"]) / name).exists()]
    if missing:  # checked before anything is copied: no half-shipped sweep
        raise WMError(f"the sweep in {out} is incomplete: {', '.join(missing)} missing; rerun the same tau-sweep "
                      "command, which resumes it")
    for r in res["rows"]:
        for name in SHIPPED:
            dst = tau_dir(weights / "tau_controllers", r["tau"]) / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as tmp:
                shutil.copyfile(tau_dir(out, r["tau"]) / name, tmp)
    write_json(weights / "tau_sweep.json", res)
    write_text(weights / "tau_sweep.md", sweep_file_text(res))
    return res


def sweep_file_text(res: dict) -> str:
    """tau_sweep.md: the table, and the budget behind it."""
    c, d = res["cmaes"], res["dream"]
    gens = c["generations"] if isinstance(c["generations"], int) else "/".join(map(str, c["generations"])) + " (by tau)"
    return (res["markdown"] + f"\n\nOne C per tau, trained in the dream by CMA-ES ({c['popsize']} candidates x "
            f"{c['rollouts']} rollouts, {gens} generations, seed {res['seed']}); virtual: {res['episodes']} "
            f"dream episodes (at most {d['max_steps']} steps), actual: {res['episodes']} real episodes. Paper: 100 "
            "episodes each.\n")


def sweep_markdown(rows: list[dict]) -> str:
    """The tau sweep's rows beside the paper's, as a markdown table. Chapter 8."""
    lines = ["| tau | virtual (wmlib) | actual (wmlib) | virtual (paper) | actual (paper) |", "|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: r["tau"]):
        pv, pa = PAPER.get(round(r["tau"], 2), ("-", "-"))
        lines.append(f"| {r['tau']:g} | {r['virtual_mean']:.0f} ± {r['virtual_std']:.0f} | {r['actual_mean']:.0f} ± "
                     f"{r['actual_std']:.0f} | {pv} | {pa} |")
    return "\n".join(lines)
