"""The paper's CarRacing ablation with the V and M shipped in pretrained/carracing, shipped with the book.

    python scripts/ablation_carracing.py --generations 30
    # rerun the same command after an interrupt, on this machine or a fresh clone: it resumes

Three controllers, each trained from scratch by CMA-ES in the real game with the same V, M and budget
(the settings of the shipped C, scripts/pretrained_carracing.py: pop 16 x 2 rollouts, 1,000-step
episodes, the same seed, so the same training tracks) for GENERATIONS generations, then scored on
100 unseen tracks (`wmlib.ablation`):

- z:        a = tanh(W z + b)
- z_hidden: a = tanh(W2 tanh(W1 z + b1) + b2), 40 hidden units
- zh:       a = tanh(W [z, h] + b), the shipped C's architecture

The work lives in runs/carracing-ablation-GENERATIONS (git ignores runs/). Its progress, each
controller's CMA-ES state (the fitness values cma was told, a few kB) and finished score, is copied to
pretrained/carracing/ablation/progress-GENERATIONS after every controller and with --save-progress, and
a fresh clone starts from it, so the ablation can be spread over sittings on different machines; a
larger --generations goes on from the progress of a smaller one (its generations come first). The
finished table (ablation.json, ablation.md) goes to pretrained/carracing/ablation, where chapter 7
shows it.

With --weights RUN, a run of scripts/pretrained_carracing.py, V and M come from that run instead, and
the zh controller, which with these settings is the run's own CMA-ES, starts from the run's first
GENERATIONS generations (replayed, checked against their saved checksums, no episode played).
"""
import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from wmlib.studies.ablation import KINDS, ablation  # noqa: E402
from wmlib.checkpoint import read_json, save_npz, write_json, write_text  # noqa: E402
from wmlib.errors import WMError  # noqa: E402
from wmlib.run.pipeline import log_err  # noqa: E402

SHIPPED = ROOT / "pretrained" / "carracing"
PROGRESS_FILES = ("cmaes/settings.json", "cmaes/state.npz", "cmaes/log.jsonl", "scores.json")


def run_config(generations: int, workers: int):
    """The shipped C's configuration (scripts/pretrained_carracing.py), with GENERATIONS for CMA-ES."""
    spec = importlib.util.spec_from_file_location("pretrained_carracing", ROOT / "scripts" / "pretrained_carracing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.config(generations, workers)


def seed_zh(run_dir: Path, folder: Path, generations: int) -> None:
    """Start zh's CMA-ES from the run's own first `generations` generations (same settings and seed)."""
    src, dst = run_dir / "cmaes", folder / "cmaes"
    if dst.exists():
        return
    try:
        with np.load(src / "state.npz", allow_pickle=False) as f:
            state = {k: f[k] for k in ("fitness", "returns", "checksum")}
    except (OSError, KeyError, ValueError) as e:
        raise WMError(f"cannot read the run's CMA-ES state {src / 'state.npz'} ({e}): train the run's C first "
                      f"(python scripts/pretrained_carracing.py --run-dir {run_dir} --generations {generations})") from e
    if len(state["fitness"]) < generations:
        raise WMError(f"{run_dir}'s own CMA-ES has {len(state['fitness'])} generations, the ablation asks for "
                      f"{generations}: continue it first (python scripts/pretrained_carracing.py --run-dir {run_dir} "
                      f"--generations {generations}) or ask for fewer")
    tmp = folder / "cmaes.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(src / "settings.json", tmp / "settings.json")
    save_npz(tmp / "state.npz", **{k: v[:generations] for k, v in state.items()})
    lines = (src / "log.jsonl").read_text().splitlines()[:generations]
    (tmp / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    tmp.rename(dst)  # all or nothing: an interrupted copy leaves no half-seeded state


def _copy_tree_atomic(files: list[tuple[Path, Path]], dst_dir: Path) -> None:
    """Copy (source, relative path) pairs into a new dst_dir that replaces the old one by renames: a kill
    leaves either folder whole, never a mix of the two."""
    tmp = dst_dir.with_name(dst_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for src, rel in files:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, tmp / rel)
    old = dst_dir.with_name(dst_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst_dir.exists():
        dst_dir.rename(old)
    tmp.rename(dst_dir)
    shutil.rmtree(old, ignore_errors=True)


def save_progress(work: Path, progress: Path) -> list[str]:
    """Copy each controller's CMA-ES state and score from the work folder to `progress` (a folder per kind,
    replaced all at once). Returns the kinds copied."""
    saved = []
    for kind in KINDS:
        files = [(work / kind / rel, Path(rel)) for rel in PROGRESS_FILES if (work / kind / rel).exists()]
        if any(str(rel) == "cmaes/state.npz" for _, rel in files):
            _copy_tree_atomic(files, progress / kind)
            saved.append(kind)
    return saved


def restore_progress(ship_dir: Path, generations: int, work: Path) -> list[str]:
    """Start each controller that has no state in the work folder from the saved progress: that of this
    budget (ship_dir/progress-GENERATIONS, score included) or else of the largest smaller budget, whose CMA-ES
    generations are the first ones of this budget's (same settings and seed), so a longer ablation goes on
    from a shorter one. Returns the kinds restored."""
    budgets = ((p.name.removeprefix("progress-"), p) for p in ship_dir.glob("progress-*"))
    saved = sorted((int(g), p) for g, p in budgets if g.isdigit() and int(g) <= generations)
    restored = []
    for kind in KINDS:
        if (work / kind / "cmaes").exists():
            continue
        for budget, progress in reversed(saved):
            src = progress / kind
            if (src / "cmaes" / "state.npz").exists():
                rels = [rel for rel in PROGRESS_FILES if (src / rel).exists() and
                        (budget == generations or rel != "scores.json")]
                _copy_tree_atomic([(src / rel, Path(rel)) for rel in rels], work / kind)
                restored.append(kind)
                break
    return restored


def ship(work: Path, dest: Path, command: str, weights_text: str, eval_seed: int) -> None:
    """Copy the finished table to dest (atomic writes), with the command that made it."""
    res = read_json(work / "ablation.json")
    res["command"] = command
    res["weights"] = (f"V and M of {weights_text}; each controller scored on {res['episodes']} unseen tracks "
                      f"(evaluation seed {eval_seed})")
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / "ablation.json", res)
    write_text(dest / "ablation.md", res["markdown"] + "\n")


def main():
    try:
        run()
    except WMError as e:
        raise SystemExit(f"error: {e}") from None


def run():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=30)
    ap.add_argument("--weights", type=Path, default=SHIPPED,
                    help="V and M: pretrained/carracing (default) or a run of scripts/pretrained_carracing.py")
    ap.add_argument("--work", type=Path, default=None,
                    help="working folder (default runs/carracing-ablation-G, or RUN/ablation-G with --weights RUN)")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ship", type=Path, default=SHIPPED / "ablation",
                    help="where the table and the progress go (chapter 7 reads pretrained/carracing/ablation)")
    ap.add_argument("--save-progress", action="store_true",
                    help="only copy the work folder's progress to the ship folder (for stopping mid-way), then exit")
    args = ap.parse_args()
    if args.generations < 1:
        raise SystemExit(f"--generations must be at least 1, got {args.generations}")
    weights = args.weights
    is_run = (weights / "run.json").exists()
    shipped_vm = weights.resolve() == SHIPPED.resolve()  # the saved progress is of the shipped V and M only
    work = args.work or (weights / f"ablation-{args.generations}" if is_run
                         else ROOT / "runs" / f"carracing-ablation-{args.generations}")
    progress = args.ship / f"progress-{args.generations}"
    if args.save_progress:
        if not shipped_vm:
            raise SystemExit("--save-progress keeps the progress of the shipped V and M only; drop --weights")
        saved = save_progress(work, progress)
        print(f"saved the progress of {', '.join(saved) or 'no controller'} to {progress}")
        return
    torch.set_num_threads(1)  # small models on a busy 2-core CPU: one thread is much faster
    cfg = run_config(args.generations, args.workers)
    if is_run and read_json(weights / "run.json").get("env") != "carracing":
        raise WMError(f"{weights} is a run of another environment: pass pretrained/carracing or a CarRacing run")
    if not (weights / "vae.safetensors").exists() or not (weights / "mdnrnn.safetensors").exists():
        raise WMError(f"{weights} has no trained V and M (vae.safetensors, mdnrnn.safetensors): pass "
                      "pretrained/carracing or a run of scripts/pretrained_carracing.py")
    if is_run:
        seed_zh(weights, work / "zh", args.generations)
    elif shipped_vm:
        restored = restore_progress(args.ship, args.generations, work)
        if restored:
            log_err(f"resuming {', '.join(restored)} from the progress saved in {args.ship}")
    # Each controller's progress is saved as soon as it is scored, not only at the end.
    res = ablation(weights, cfg, work, args.episodes, KINDS, log_err, progress=False,
                   after_kind=(lambda kind: save_progress(work, progress)) if shipped_vm else None)
    command = f"python scripts/ablation_carracing.py --generations {args.generations} --episodes {args.episodes}"
    if not shipped_vm:
        command += f" --weights {weights}"
    weights_text = "pretrained/carracing (the shipped V and M, stored in fp16)" if shipped_vm else str(weights)
    ship(work, args.ship, command, weights_text, cfg.seed + 1)  # wmlib.ablation scores on seed + 1
    print(res["markdown"])


if __name__ == "__main__":
    main()
