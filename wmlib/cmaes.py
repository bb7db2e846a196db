"""Training C with CMA-ES (the `cma` package) in the real environment.

Each generation: ask `popsize` candidates, play `rollouts` episodes with each (every candidate of a
generation sees the same track seeds, which makes their scores comparable), tell cma the negated
mean returns (cma minimises). Optional weight decay is a *penalty*, fitness = mean return -
weight_decay * mean(w^2); the authors' code had the sign flipped, rewarding large weights.

Resume without pickles: cma draws its samples from our own numpy Generator, so its whole state is
a function of the fitness values it was told. cmaes/state.npz keeps those (and a checksum of every
generation's candidates); resuming replays ask/tell from them, checks the candidates match, and
carries on exactly as if never interrupted.

Full CMA-ES samples through an eigendecomposition of its covariance, and with 867 parameters and a
population of 16 that covariance stays close to the identity: its eigenvectors are ill-defined, and another
linear algebra can return others. A CarRacing search saved with numpy 2.4.6 on an AMD machine replayed
within 1e-8 there under numpy 1.26 to 2.4 and five OpenBLAS kernels, but drew other candidates from
generation 11 on (cma's first decomposition) under numpy 2.5.2 on an Intel machine.
`diagonal_from=G` continues a search from generation G on as sep-CMA-ES
(Ros & Hansen 2008: a diagonal covariance, elementwise updates, linear time), started from the full
search's mean and step size, which cmaes/switch.npz keeps: from then on the replay needs neither the full
search's generations nor the same linear algebra, and any machine resumes the search.

`resizes=[(G, popsize, rollouts, min_std), ...]` changes a sep-CMA-ES search's population and rollouts per
candidate after generation G: sep-CMA-ES starts again from the mean, step size and per-coordinate scales
there (cmaes/resize-G.npz), with the learning rates of the new population, and with min_std > 0 keeps every
coordinate's standard deviation at least min_std (cma's `minstd`). Under noise, cma's step-size control
shrinks sigma until the candidates differ less than the noise does and the ranking is luck; the floor keeps
them apart (benchmarks/carracing_ranking.py measures both). state.npz then holds generations of several
shapes, padded with NaN to the largest.
"""
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import atomic_path, read_json, save_model, save_npz, write_json
from .controller import Controller, ControllerConfig
from .errors import WMError, check_fields
from .parallel import resolve_workers


@dataclass
class CMAESConfig:
    """C's search: population, rollouts per candidate, initial step size, generations, where it plays. Chapter 6."""
    popsize: int = 64
    rollouts: int = 16  # episodes per candidate; fitness is their mean return
    sigma0: float = 0.1
    generations: int = 1800
    weight_decay: float = 0.0
    max_steps: int | None = None  # cap on rollout length (None: the env's own)
    workers: int | None = None  # evaluation processes (None: one per core)
    eval_every: int = 25  # evaluate the distribution mean every this many generations (0: never)
    eval_episodes: int = 1024
    where: str = "real"  # "real": rollouts in the game; "dream": inside M (Doom)
    stall_steps: int | None = None  # real game: end a training episode after this many steps without reward
    diagonal_from: int | None = None  # from this generation on, sep-CMA-ES from the mean and step size there
    resizes: tuple = ()  # ((generation, popsize, rollouts, min_std), ...): sep-CMA-ES goes on so from there

    def __post_init__(self):
        check_fields(self, positive=("popsize", "rollouts", "sigma0", "max_steps", "stall_steps"),
                     non_negative=("generations", "weight_decay", "workers", "eval_every", "eval_episodes",
                                   "diagonal_from"))
        resizes = []
        for x in self.resizes:
            try:
                if not 3 <= len(x) <= 4:
                    raise ValueError(f"{len(x)} values")
                resizes.append((int(x[0]), int(x[1]), int(x[2]), float(x[3]) if len(x) > 3 else 0.0))
            except (TypeError, ValueError) as e:
                raise ValueError(f"CMAESConfig.resizes must hold (generation, popsize, rollouts[, min_std]), got "
                                 f"{self.resizes!r}; for example resizes=((200, 32, 4),)") from e
        self.resizes = tuple(resizes)
        after = self.diagonal_from
        for g, pop, r, min_std in self.resizes:
            if after is None or g <= after or pop < 2 or r < 1 or not min_std >= 0:
                raise ValueError(f"CMAESConfig.resizes: {(g, pop, r, min_std)} must come after diagonal_from "
                                 f"({self.diagonal_from}) and any earlier resize, with popsize >= 2, rollouts "
                                 ">= 1 and min_std >= 0 (a resize restarts a sep-CMA-ES search)")
            after = g

    def sizes_at(self, g: int) -> tuple[int, int]:
        """(popsize, rollouts) of the generation after g generations."""
        sizes = (self.popsize, self.rollouts)
        for at, pop, r, _ in self.resizes:
            if g >= at:
                sizes = (pop, r)
        return sizes


def make_es(n_params: int, cfg: CMAESConfig, seed: int, *, start: dict | None = None):
    """cma's CMAEvolutionStrategy for n_params, drawing its samples from our own seeded generator. Chapter 6.

    start: {"generation", "mean", "sigma"} and optionally "scales", where a search goes on as sep-CMA-ES
    (diagonal_from, resizes) with the population that cfg sets for the generations after it."""
    import cma  # imported here: it pulls in scipy, seconds that every other command would pay

    key = [seed, 3] if start is None else [seed, 3, int(start["generation"])]
    rng = np.random.default_rng(key)
    popsize = cfg.popsize if start is None else cfg.sizes_at(int(start["generation"]))[0]
    opts = {"popsize": popsize, "seed": np.nan,  # nan: leave numpy's global RNG alone
            "randn": lambda *shape: rng.standard_normal(shape), "verbose": -9}
    if start is None:
        return cma.CMAEvolutionStrategy(np.zeros(n_params), cfg.sigma0, opts)
    if "scales" in start:  # the per-coordinate step sizes that sep-CMA-ES had learnt
        opts["CMA_stds"] = np.asarray(start["scales"], dtype=np.float64)
    if float(start.get("min_std", 0)) > 0:
        opts["minstd"] = float(start["min_std"])
    return cma.CMAEvolutionStrategy(np.asarray(start["mean"], dtype=np.float64), float(start["sigma"]),
                                    {**opts, "CMA_diagonal": True})


def fitness_of(returns: np.ndarray, solutions: np.ndarray, weight_decay: float) -> np.ndarray:
    """returns (pop, rollouts) -> fitness (pop,) to maximise."""
    return returns.mean(axis=1) - weight_decay * np.mean(np.asarray(solutions) ** 2, axis=1)


def _truncate_log(log_path: Path, generations: int) -> None:
    """Keep the log's lines of generations 1..generations (those in state.npz) and drop the rest: the line
    of a generation that a kill interrupted after its log line, or cut short while it was written."""
    lines = log_path.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["generation"] <= generations:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            pass
    if keep != lines:
        with atomic_path(log_path) as tmp:
            tmp.write_text("".join(line + "\n" for line in keep))


def train_cmaes(evaluate_population, controller_config: ControllerConfig, cfg: CMAESConfig, *, out_dir: Path,
                env: str, seed: int = 0, evaluate_mean=None, log=print, progress: bool = True,
                state_name: str = "cmaes") -> Controller:
    """Run CMA-ES, resuming from out_dir/state_name if it holds a state.

    evaluate_population(solutions (pop, P), generation) -> returns (pop, rollouts).
    evaluate_mean(params) -> (mean, std) or (mean, std, returns), called every cfg.eval_every generations.

    Introduced in chapter 6.
    """
    out_dir = Path(out_dir)
    state_dir = out_dir / state_name
    state_path, log_path = state_dir / "state.npz", state_dir / "log.jsonl"
    state_dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(controller_config)
    check_settings(state_dir, cfg, controller_config, seed, env)
    es, fitness, returns_hist, checksums = replay_state(controller.num_params, cfg, seed, state_dir)
    if len(fitness):
        log(f"resumed CMA-ES after generation {len(fitness)}")
    if log_path.exists():
        _truncate_log(log_path, len(fitness))

    ran = len(fitness) < cfg.generations  # new generations to play (else a pure replay)
    for g in range(len(fitness), cfg.generations):
        if g == cfg.diagonal_from:
            es = switch_to_diagonal(es, g, cfg, seed, state_dir, log)
        if g in _resize_points(cfg):
            es = resize(es, g, cfg, seed, state_dir, log)
        t0 = time.monotonic()
        sols = np.asarray(es.ask())
        rets = np.asarray(evaluate_population(sols, g), dtype=np.float64)
        if rets.shape != cfg.sizes_at(g):
            raise RuntimeError(f"evaluate_population returned shape {rets.shape}, not {cfg.sizes_at(g)}")
        fit = fitness_of(rets, sols, cfg.weight_decay)
        es.tell(list(sols), list(-fit))
        controller.set_flat(es.result.xfavorite)  # the distribution mean: C's current best guess
        record = {"cmaes_state": state_name, "generation": g + 1, "mean_fitness": float(fit.mean()),
                  "best_fitness": float(fit.max()),
                  "worst_fitness": float(fit.min()), "sigma": float(es.sigma),
                  "median_std": float(np.median(es.stds)),  # what is sampled: sigma x scales, floored by min_std
                  "seconds": round(time.monotonic() - t0, 2), "workers": resolve_workers(cfg.workers),
                  "popsize": len(sols), "rollouts": rets.shape[1]}
        if cfg.diagonal_from is not None and g >= cfg.diagonal_from:
            record["diagonal"] = True
        if evaluate_mean is not None and cfg.eval_every and (g + 1) % cfg.eval_every == 0:
            scored = evaluate_mean(es.result.xfavorite)
            record["eval_mean"], record["eval_std"] = scored[:2]
            if len(scored) > 2:  # each episode's return: the same tracks each time, so generations compare paired
                record["eval_returns"] = [round(float(x), 2) for x in scored[2]]

        # Saved after every generation. The log line before the state: a kill between the two then leaves a
        # line too many, which the resumed run drops (_truncate_log) and writes again, rather than a
        # generation missing from the log.
        fitness, returns_hist = _stack(fitness, fit), _stack(returns_hist, rets)
        checksums = np.append(checksums, sols.sum())
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        save_npz(state_path, fitness=fitness, returns=returns_hist, checksum=checksums)
        save_model(controller, out_dir, "controller", env, extra=record)
        log(f"generation {g + 1}/{cfg.generations}: fitness mean {record['mean_fitness']:.1f}, best "
            f"{record['best_fitness']:.1f}, sigma {record['sigma']:.4f} ({record['seconds']} s)")
    if len(fitness):
        controller.set_flat(es.result.xfavorite)
        _save_final_controller(controller, out_dir, env, state_name, fitness, ran, log)
    return controller


def _stack(history: np.ndarray, row: np.ndarray) -> np.ndarray:
    """history (gens, ...) with row appended, both padded with NaN to the larger shape (resizes)."""
    shape = tuple(max(a, b) for a, b in zip(history.shape[1:], row.shape))
    out = np.full((len(history) + 1, *shape), np.nan)
    out[(slice(0, len(history)), *map(slice, history.shape[1:]))] = history
    out[(len(history), *map(slice, row.shape))] = row
    return out


def generation_returns(returns: np.ndarray) -> np.ndarray:
    """One generation's saved returns (pop, rollouts) without the NaN padding of a resized search's state."""
    return returns[~np.isnan(returns).all(1)][:, ~np.isnan(returns).all(0)]


def variance_parts(returns: np.ndarray) -> tuple[float, float]:
    """(candidates' variance, noise variance) of one generation's returns (pop, tracks), by a two-way analysis
    of variance without replication: the track's own difficulty, shared by all candidates of a generation, is
    taken out, as it leaves their ranking alone. var_c / (var_c + var_noise / r) is then the reliability of a
    ranking by r tracks (the correlation of two independent rankings). Introduced in chapter 7."""
    pop, tracks = returns.shape
    resid = returns - returns.mean(1, keepdims=True) - returns.mean(0, keepdims=True) + returns.mean()
    noise = float((resid ** 2).sum() / ((pop - 1) * (tracks - 1)))
    between = tracks * float(returns.mean(1).var(ddof=1))
    return max(0.0, (between - noise) / tracks), noise


def check_settings(state_dir: Path, cfg: CMAESConfig, controller_config: ControllerConfig, seed: int,
                   env: str) -> None:
    """Write state_dir/settings.json, refusing a folder that holds a CMA-ES run with other settings (its state
    would not replay). The number of generations and of workers may change from one command to the next."""
    settings = {"cmaes": dataclasses.asdict(cfg), "controller": dataclasses.asdict(controller_config),
                "seed": seed, "env": env}
    settings["cmaes"].pop("workers")
    settings["cmaes"].pop("generations")  # more generations may be asked for on resume
    for key in ("stall_steps", "diagonal_from", "resizes"):  # searches saved before the option still resume
        if settings["cmaes"][key] in (None, ()):
            settings["cmaes"].pop(key)
    cfg_path = state_dir / "settings.json"
    if cfg_path.exists():
        saved, now = read_json(cfg_path), json.loads(json.dumps(settings))
        played = len(read_npz(state_dir / "state.npz")["fitness"]) if (state_dir / "state.npz").exists() else 0
        switch = now["cmaes"].get("diagonal_from")
        if switch is not None and "diagonal_from" not in saved["cmaes"] and played <= switch:
            saved["cmaes"]["diagonal_from"] = switch  # a full search may go on as sep-CMA-ES from a generation ahead
        # resizes at generations not played yet may be added or changed; those played are part of the search
        def ahead(c): return [r for r in c.get("resizes", []) if r[0] >= played]
        if [r for r in saved["cmaes"].get("resizes", []) if r not in ahead(saved["cmaes"])] == \
                [r for r in now["cmaes"].get("resizes", []) if r not in ahead(now["cmaes"])]:
            saved["cmaes"].pop("resizes", None)
            if "resizes" in now["cmaes"]:
                saved["cmaes"]["resizes"] = now["cmaes"]["resizes"]
        if saved != now:
            raise WMError(f"{state_dir} holds a CMA-ES run with other settings ({cfg_path}); use a new run "
                          "directory, or delete that folder to start this one over")
    write_json(cfg_path, settings)


def read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            return dict(f)
    except Exception as e:
        raise WMError(f"cannot read the CMA-ES state {path} ({e}); delete {path.parent} to restart "
                      "CMA-ES from scratch") from e


def _resize_points(cfg: CMAESConfig) -> list[int]:
    return [r[0] for r in cfg.resizes]


def _start_file(state_dir: Path, cfg: CMAESConfig, g: int) -> Path:
    return state_dir / ("switch.npz" if g == cfg.diagonal_from else f"resize-{g}.npz")


def replay_state(n_params: int, cfg: CMAESConfig, seed: int, state_dir: Path):
    """The search's cma object as it was after the generations saved in state_dir, and those generations'
    (fitness, returns, checksums). A search that went on as sep-CMA-ES replays from its last start there:
    cmaes/switch.npz (diagonal_from) or cmaes/resize-G.npz (resizes)."""
    played = len(read_npz(state_dir / "state.npz")["fitness"]) if (state_dir / "state.npz").exists() else 0
    switch_path = state_dir / "switch.npz"
    if cfg.diagonal_from is not None and switch_path.exists():
        g = int(read_npz(switch_path)["generation"])
        if g != cfg.diagonal_from:
            raise WMError(f"{switch_path} starts sep-CMA-ES at generation {g}, the settings "
                          f"at {cfg.diagonal_from}: delete {state_dir} to restart CMA-ES")
        if played < g:
            raise WMError(f"{state_dir} holds {played} generations and a switch to sep-CMA-ES after generation "
                          f"{g} ({switch_path}): the two come from different searches; restore the "
                          "whole folder, or delete it to restart CMA-ES")
    # The last start the search has passed. At the saved generation count, the switch's file is used where it
    # exists (the full generations may not replay here), and a resize's is written again from the replayed
    # search (its sizes may have changed in the settings since).
    d = cfg.diagonal_from
    starts = ([d] if d is not None and (d < played or d == played and switch_path.exists()) else []) + \
        [g for g in _resize_points(cfg) if g < played]
    if not starts:
        es = make_es(n_params, cfg, seed)
        return (es, *replay(es, state_dir, cfg))
    first = starts[-1]
    path = _start_file(state_dir, cfg, first)
    if not path.exists():
        what = ("full CMA-ES, and the settings go on as sep-CMA-ES" if first == cfg.diagonal_from else
                "sep-CMA-ES, and the settings resize its population")
        raise WMError(f"{state_dir / 'state.npz'} holds {played} generations of {what} after generation {first} "
                      f"without {path}: restore that file with the rest of the search, or delete the folder to "
                      "restart CMA-ES")
    start = read_npz(path)
    if int(start["generation"]) != first:
        raise WMError(f"{path} starts at generation {int(start['generation'])}, not {first}: delete {state_dir} "
                      "to restart CMA-ES")
    es = make_es(n_params, cfg, seed, start=start)
    return (es, *replay(es, state_dir, cfg, first=first))


def switch_to_diagonal(es, generation: int, cfg: CMAESConfig, seed: int, state_dir: Path, log):
    """Go on as sep-CMA-ES from es's mean and step size, written to state_dir/switch.npz first."""
    start = {"generation": np.int64(generation), "mean": np.asarray(es.mean, dtype=np.float64),
             "sigma": np.float64(es.sigma)}
    save_npz(state_dir / "switch.npz", **start)
    log(f"generation {generation + 1} on: sep-CMA-ES from the mean and step size {es.sigma:.4f} of generation "
        f"{generation}")
    return make_es(len(start["mean"]), cfg, seed, start=start)


def resize(es, generation: int, cfg: CMAESConfig, seed: int, state_dir: Path, log):
    """Start sep-CMA-ES again from es's mean, step size and per-coordinate scales with the population and
    rollouts that cfg sets from this generation on; the start is written to state_dir/resize-G.npz first.
    The evolution paths start again from zero."""
    pop, rollouts = cfg.sizes_at(generation)
    min_std = next(r[3] for r in cfg.resizes if r[0] == generation)
    start = {"generation": np.int64(generation), "mean": np.asarray(es.mean, dtype=np.float64),
             "sigma": np.float64(es.sigma), "scales": np.asarray(es.stds / es.sigma, dtype=np.float64),
             "popsize": np.int64(pop), "rollouts": np.int64(rollouts), "min_std": np.float64(min_std)}
    save_npz(_start_file(state_dir, cfg, generation), **start)
    log(f"generation {generation + 1} on: sep-CMA-ES with {pop} candidates x {rollouts} rollouts, from the mean "
        f"and step size {es.sigma:.4f} of generation {generation}"
        + (f", every coordinate's standard deviation at least {min_std}" if min_std else ""))
    return make_es(len(start["mean"]), cfg, seed, start=start)


def replay(es, state_dir: Path, cfg: CMAESConfig, first: int = 0):
    """Tell es the generations after `first` saved in state_dir/state.npz again, which rebuilds
    cma's exact state; returns all the saved (fitness, returns, checksums), empty when there is no state."""
    state_path = state_dir / "state.npz"
    if not state_path.exists():
        return np.zeros((0, cfg.popsize)), np.zeros((0, cfg.popsize, cfg.rollouts)), np.zeros(0)
    saved = read_npz(state_path)
    fitness, returns_hist, checksums = saved["fitness"], saved["returns"], saved["checksum"]
    for g in range(first, len(fitness)):
        pop, _ = cfg.sizes_at(g)
        sols = np.asarray(es.ask())
        # Other BLAS kernels and numpy versions drift the sums of full CMA-ES by up to 1e-8 over a hundred
        # generations, and sep-CMA-ES's by 1e-16; another seed, cma version or eigensolver (the module's
        # docstring) gives other candidates.
        if not np.isclose(sols.sum(), checksums[g], rtol=1e-6, atol=1e-6):
            raise WMError(f"the CMA-ES state in {state_dir} does not replay (generation {g + 1} differs: another "
                          "cma version or seed, or full CMA-ES under another eigensolver; a search that goes on as "
                          "sep-CMA-ES, diagonal_from, replays anywhere); resume it on the machine "
                          "that saved it, or delete that folder to restart CMA-ES")
        es.tell(list(sols), list(-fitness[g, :pop]))
    return fitness, returns_hist, checksums


def _save_final_controller(controller: Controller, out_dir: Path, env: str, state_name: str,
                           fitness: np.ndarray, ran: bool, log) -> None:
    """Write C again after a pure replay too (a crash may have come between the state and C), unless C came
    from another CMA-ES run in this folder: a later round of the iterative procedure, whose C a replay of
    round 0 must not replace."""
    meta_path = out_dir / "controller.json"
    owner = read_json(meta_path).get("cmaes_state", state_name) if meta_path.exists() else state_name
    if owner == state_name or ran:
        save_model(controller, out_dir, "controller", env, extra={
            "cmaes_state": state_name, "generation": len(fitness), "mean_fitness": float(np.nanmean(fitness[-1])),
            "best_fitness": float(np.nanmax(fitness[-1]))})
    else:
        log(f"{out_dir / 'controller.safetensors'} comes from {owner}, not {state_name}: left as it is")
