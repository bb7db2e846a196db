"""`python -m wmlib`: the command line. Run `python -m wmlib --help` for the list of commands."""
import argparse
import contextlib
import json
import sys
from pathlib import Path

from ..errors import WMError


def cmd_info(args):
    from .profiles import param_counts
    info = param_counts(args.env)
    if args.json:
        print(json.dumps(info))
        return
    print(f"{args.env}: z = {info['z_size']}, LSTM {info['rnn_hidden']}, controller {info['controller_kind']!r}")
    print(f"  V (ConvVAE)      {info['vae']:>12,}")
    print(f"  M (MDN-RNN)      {info['mdnrnn']:>12,}   (PyTorch counts {info['mdnrnn_pytorch']:,}: its LSTM keeps "
          "two bias vectors, the paper one)")
    print(f"  C (controller)   {info['controller']:>12,}")


def _run_config(args):
    from .pipeline import config_for, open_run
    cfg, run_dir = config_for(args.env, args.profile, args.seed, args.run_dir)
    if getattr(args, "episodes", None) is not None:
        cfg.collect.episodes = _positive("--episodes", args.episodes)
    if getattr(args, "policy", None) is not None:
        from ..policies import POLICIES
        if args.policy not in POLICIES[args.env]:
            raise WMError(f"unknown data policy {args.policy!r} for {args.env}: choose one of "
                          f"{', '.join(p for p in POLICIES[args.env] if p != 'agent')}")
        cfg.collect.policy = args.policy
    if getattr(args, "generations", None) is not None:
        cfg.cmaes.generations = _positive("--generations", args.generations)
    if getattr(args, "stall_steps", None) is not None:
        cfg.cmaes.stall_steps = args.stall_steps
    if getattr(args, "iterations", None) is not None:
        cfg.iterate.iterations = _positive("--iterations", args.iterations, allow_zero=True)
    if getattr(args, "where", None) is not None:
        cfg.cmaes.where = args.where
    if getattr(args, "tau", None) is not None:
        cfg.dream = _dream_config(args, cfg.dream)
    if args.workers is not None:
        cfg.collect.workers = cfg.cmaes.workers = _positive("--workers", args.workers, allow_zero=True)
    return open_run(run_dir, cfg), run_dir


def _dream_config(args, base=None):
    """The dream's settings: `base` (default: DreamConfig()) with --tau and --max-steps where the command has
    them and they are given. DreamConfig checks them; its message, for the option it names."""
    from ..dream import dream_config
    given = {name: getattr(args, name, None) for name in ("tau", "max_steps")}
    try:
        return dream_config(base, **given)
    except ValueError as e:
        options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items() if v is not None)
        raise WMError(f"{options}: {e}") from e


def _positive(name, value, allow_zero=False):
    if value < 0 or (value == 0 and not allow_zero):
        raise WMError(f"{name} must be {'>= 0' if allow_zero else '>= 1'}, got {value}")
    return value


# The smallest value of every numeric option, whichever command has it.
MINIMUM = {"seed": 0, "workers": 0, "episodes": 1, "max_steps": 1, "generations": 1, "iterations": 0, "stall_steps": 1}


def _check_numbers(args):
    """Refuse an out-of-range option before any command starts, not deep in a stage or a worker."""
    for name, low in MINIMUM.items():
        if getattr(args, name, None) is not None:
            _positive("--" + name.replace("_", "-"), getattr(args, name), allow_zero=low == 0)


@contextlib.contextmanager
def _dask(args):
    """The Dask executor of --dask-scheduler, or None (the stages' own local worker processes)."""
    if not getattr(args, "dask_scheduler", None):
        yield None
        return
    from ..parallel import DaskExecutor
    executor = DaskExecutor(args.dask_scheduler)
    try:
        yield executor
    finally:
        executor.shutdown()


def cmd_stage(args):
    from . import pipeline as P
    cfg, run_dir = _run_config(args)
    with _dask(args) as executor:
        _run_stages(args, P, cfg, run_dir, not args.no_progress, executor)
    print(f"done: {args.command} ({cfg.env}, profile {cfg.profile}) in {run_dir}", file=sys.stderr)


def _run_stages(args, P, cfg, run_dir, progress, executor):
    stages = {"collect": [P.stage_collect], "train-vae": [P.stage_vae], "train-mdnrnn": [P.stage_mdnrnn],
              "train-controller": [P.stage_controller],
              "iterate": [P.stage_iterate],
              "run": [P.stage_collect, P.stage_vae, P.stage_mdnrnn, P.stage_controller, P.stage_iterate,
                      P.stage_evaluate]}
    for stage in stages[args.command]:
        kwargs = {"progress": progress}
        if stage in (P.stage_vae, P.stage_mdnrnn, P.stage_controller, P.stage_iterate):
            kwargs["device"] = args.device
        if stage in (P.stage_collect, P.stage_controller, P.stage_iterate, P.stage_evaluate):
            kwargs["executor"] = executor
        with P.timed(run_dir, stage.__name__.removeprefix("stage_")):
            stage(cfg, run_dir, **kwargs)


def cmd_evaluate(args):
    from ..rollout import evaluate
    weights = Path(args.weights)
    if not weights.is_dir():
        raise WMError(f"weights directory {weights} does not exist; pass a run directory (e.g. runs/{args.env}-smoke) "
                      "or a directory holding vae, mdnrnn and controller .safetensors/.json files")
    _positive("--episodes", args.episodes)
    if args.max_steps is not None:
        _positive("--max-steps", args.max_steps)
    with _dask(args) as executor:
        res = evaluate(args.env, weights, args.episodes, seed=args.seed, max_steps=args.max_steps,
                       workers=args.workers, executor=executor, progress=not args.no_progress)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{args.env}: {res['mean']:.1f} +- {res['std']:.1f} over {res['episodes']} episodes (seed {args.seed})")


def cmd_dream_check(args):
    from ..studies.dreamcheck import dream_check, dream_check_markdown
    from ..checkpoint import pick_device
    _positive("--episodes", args.episodes)
    dream = _dream_config(args)
    with _dask(args) as executor:
        res = dream_check(args.weights, episodes=args.episodes, dream=dream, seed=args.seed, workers=args.workers,
                          device=pick_device(args.device), progress=not args.no_progress, executor=executor,
                          real=not args.dream_only)
    print(dream_check_markdown(res))
    if args.json:
        print(json.dumps(res))


def cmd_tau_sweep(args):
    from .profiles import get_config
    from ..studies.tausweep import parse_taus, ship_sweep, tau_sweep
    from ..checkpoint import pick_device
    from .pipeline import log_err
    taus = parse_taus(args.taus)
    _positive("--episodes", args.episodes)
    cfg = get_config("doom", args.profile, args.seed)
    for name in ("popsize", "rollouts", "generations"):  # the profile's CMA-ES budget, resized per option
        value = getattr(args, name)
        if value is not None:
            _positive("--" + name, value)
            setattr(cfg.cmaes, name, value)
    out = Path(args.out) if args.out else Path(args.weights) / "tau_sweep"
    with _dask(args) as executor:
        res = tau_sweep(Path(args.weights), taus, cfg, out=out, episodes=args.episodes, seed=args.seed,
                        device=pick_device(args.device), workers=args.workers, log=log_err,
                        progress=not args.no_progress, executor=executor)
    if args.ship:
        ship_sweep(out, Path(args.weights))
        log_err(f"shipped: {Path(args.weights) / 'tau_sweep.json'} and {Path(args.weights) / 'tau_controllers'}/")
    print(res["markdown"])
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "markdown"}))


def cmd_ablation(args):
    from ..studies.ablation import ablation
    from .pipeline import log_err
    from .profiles import get_config
    from ..checkpoint import read_json
    _positive("--episodes", args.episodes)
    meta = Path(args.weights) / "vae.json"
    env = read_json(meta).get("env") if meta.exists() else "carracing"
    if env != "carracing":
        raise WMError(f"{args.weights} holds {env} weights; the ablation is the paper's CarRacing experiment: pass "
                      "a CarRacing run or weights directory")
    cfg = get_config("carracing", args.profile, args.seed)
    if args.generations is not None:
        cfg.cmaes.generations = _positive("--generations", args.generations)
    if args.workers is not None:
        cfg.cmaes.workers = _positive("--workers", args.workers, allow_zero=True)
    out = Path(args.out) if args.out else Path(args.weights) / "ablation"
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    with _dask(args) as executor:
        res = ablation(Path(args.weights), cfg, out, episodes=args.episodes, kinds=kinds, log=log_err,
                       progress=not args.no_progress, executor=executor)
    print(res["markdown"])
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "markdown"}))


def cmd_export(args):
    from .export import export
    _positive("--episodes", args.episodes)
    with _dask(args) as executor:
        card = export(args.run_dir, args.out, args.env, episodes=args.episodes, seed=args.seed,
                      command=args.command_line, workers=args.workers, progress=not args.no_progress, executor=executor)
    print(json.dumps(card["score"]))


DASK_HELP = ("run the parallel work (real-game rollouts, collection) on the Dask cluster of this scheduler, "
             "e.g. tcp://10.0.0.5:8786, instead of local processes")


def _add_work_options(q, device: bool = False) -> None:
    """What every command that plays real episodes asks: where the work runs, and whether to show progress."""
    q.add_argument("--workers", type=int, default=None)
    q.add_argument("--dask-scheduler", default=None, metavar="ADDRESS", help=DASK_HELP)
    if device:
        q.add_argument("--device", default=None)
    q.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    from ..dream import DreamConfig
    from ..envs import ENV_NAMES
    from ..studies.tausweep import PAPER_TAUS
    from .profiles import PROFILES
    p = argparse.ArgumentParser(prog="python -m wmlib", description="World Models (Ha & Schmidhuber, 2018): "
                                "collect, train V, M and C, evaluate.")
    sub = p.add_subparsers(dest="command", required=True)
    env_kw = dict(required=True, choices=ENV_NAMES, help="carracing or doom")

    q = sub.add_parser("info", help="parameter counts of V, M and C, as in the paper's table")
    q.add_argument("--env", **env_kw)
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.set_defaults(func=cmd_info)

    helps = {"collect": "random rollouts into RUN_DIR/episodes", "train-vae": "train V on the episodes",
             "train-mdnrnn": "encode series with V and train M",
             "train-controller": "CMA-ES for C (in the real game, or in the dream with --where dream)",
             "iterate": "the iterative procedure: collect with C, retrain M, retrain C in the dream",
             "run": "all stages, then evaluate"}
    for name, h in helps.items():
        q = sub.add_parser(name, help=h)
        q.add_argument("--env", **env_kw)
        q.add_argument("--profile", default="default", choices=PROFILES)
        q.add_argument("--run-dir", type=Path, default=None, help="default: runs/ENV-PROFILE")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--workers", type=int, default=None, help="worker processes (default: the profile's)")
        q.add_argument("--dask-scheduler", default=None, metavar="ADDRESS", help=DASK_HELP)
        q.add_argument("--device", default=None, help="torch device for V and M (default: cuda if available)")
        q.add_argument("--no-progress", action="store_true", help="no progress bars")
        if name in ("collect", "run"):
            q.add_argument("--episodes", type=int, default=None, help="override the profile's episode count")
            q.add_argument("--policy", default=None,
                           help="data policy of the random rollouts (CarRacing: random_weights, the authors', or "
                                "brownian, which stays on the road more; Doom: held_random)")
        if name in ("train-controller", "run", "iterate"):
            q.add_argument("--generations", type=int, default=None, help="override the profile's generations")
            q.add_argument("--where", choices=("real", "dream"), default=None,
                           help="train C in the real game or in M's dream (default: the profile's)")
            q.add_argument("--tau", type=float, default=None, help="the dream's temperature (default: the profile's)")
            q.add_argument("--stall-steps", type=int, default=None,
                           help="real game: end a training episode after this many steps without a new tile "
                                "(evaluation episodes are never cut; default: never)")
        if name in ("iterate", "run"):
            q.add_argument("--iterations", type=int, default=None,
                           help="rounds of the iterative procedure (default: the profile's)")
        q.set_defaults(func=cmd_stage)

    q = sub.add_parser("evaluate", help="play N real episodes with a trained agent")
    q.add_argument("--env", **env_kw)
    q.add_argument("--weights", required=True, help="run directory or weights directory")
    q.add_argument("--episodes", type=int, default=100)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--max-steps", type=int, default=None)
    q.add_argument("--json", action="store_true", help="last line of stdout: one JSON object")
    _add_work_options(q)
    q.set_defaults(func=cmd_evaluate)

    q = sub.add_parser("export", help="fp16 weights + model card (with a fresh evaluation) for shipping")
    q.add_argument("--env", **env_kw)
    q.add_argument("--run-dir", type=Path, required=True)
    q.add_argument("--out", type=Path, required=True, help="e.g. pretrained/doom")
    q.add_argument("--episodes", type=int, default=100)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--command-line", default=None, help="the command that trained the run, for the card")
    _add_work_options(q)
    q.set_defaults(func=cmd_export)

    q = sub.add_parser("dream-check", help="survival of fixed policies in the Doom dream and in the real game")
    q.add_argument("--weights", required=True, help="a Doom run or weights directory (V, M, initial_z.npz)")
    q.add_argument("--episodes", type=int, default=100)
    q.add_argument("--tau", type=float, default=None, help=f"the dream's temperature (default {DreamConfig.tau})")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--max-steps", type=int, default=None,
                   help=f"the cap on an episode, in the dream and the game (default {DreamConfig.max_steps})")
    q.add_argument("--dream-only", action="store_true",
                   help="only the dream half (seconds): checks a new M; the real half is the same for any M "
                        "except for the random controllers")
    q.add_argument("--json", action="store_true")
    _add_work_options(q, device=True)
    q.set_defaults(func=cmd_dream_check)

    q = sub.add_parser("tau-sweep", help="train C in the Doom dream at each tau; virtual and actual scores")
    q.add_argument("--weights", required=True, help="a Doom run or weights directory (V, M, initial_z.npz)")
    q.add_argument("--taus", default=PAPER_TAUS, help=f"comma-separated temperatures (default: the paper's, "
                                                       f"{PAPER_TAUS})")
    q.add_argument("--profile", default="default", choices=PROFILES, help="CMA-ES budget per tau")
    q.add_argument("--popsize", type=int, default=None, help="CMA-ES candidates (default: the profile's)")
    q.add_argument("--rollouts", type=int, default=None, help="dream episodes per candidate (default: the profile's)")
    q.add_argument("--generations", type=int, default=None,
                   help="CMA-ES generations per tau (default: the profile's); asking a finished sweep for more continues "
                        "each tau's CMA-ES where it ended")
    q.add_argument("--episodes", type=int, default=100)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default=None, help="default: WEIGHTS/tau_sweep")
    q.add_argument("--ship", action="store_true",
                   help="then copy the table and each tau's C into WEIGHTS (tau_sweep.json, tau_controllers/), "
                        "where chapters 8 and 9 read them")
    q.add_argument("--json", action="store_true")
    _add_work_options(q, device=True)
    q.set_defaults(func=cmd_tau_sweep)

    q = sub.add_parser("ablation", help="CarRacing: C on z, z + hidden layer, z + h, same budget; table vs paper")
    q.add_argument("--weights", required=True, help="a CarRacing run or weights directory (trained V and M)")
    q.add_argument("--profile", default="default", choices=PROFILES, help="CMA-ES budget per controller")
    q.add_argument("--kinds", default="z,z_hidden,zh")
    q.add_argument("--generations", type=int, default=None, help="override the profile's generations")
    q.add_argument("--episodes", type=int, default=100)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default=None, help="default: WEIGHTS/ablation")
    q.add_argument("--json", action="store_true")
    _add_work_options(q)
    q.set_defaults(func=cmd_ablation)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_numbers(args)
        args.func(args)
    except WMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; rerun the same command to continue", file=sys.stderr)
        return 130
    return 0
