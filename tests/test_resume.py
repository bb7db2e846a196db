"""kill -9 in the middle of V's and M's training, rerun the same job, and get the weights of an uninterrupted
run. (tests/test_kill_anywhere.py kills the whole `run` in every stage, collection and CMA-ES included.)"""
import sys

import numpy as np

from wmlib.checkpoint import load_torch_state, save_npz, write_json

from .helpers import ROOT, kill_group_when, same_tensors, start, write_synthetic_episodes


def _job(stage, data, out):
    return [sys.executable, str(ROOT / "tests" / "resume_job.py"), stage, str(data), str(out)]


def _run_killed_and_full(tmp_path, stage, data, state_name, name):
    import subprocess
    killed, full = tmp_path / "killed", tmp_path / "full"

    def mid_training():
        p = killed / state_name
        if not p.exists():
            return False
        try:
            s = load_torch_state(p)
        except Exception:
            return False
        return s["step"] >= 2 and not s["done"]

    proc = start(_job(stage, data, killed))
    assert kill_group_when(proc, mid_training), "training finished before it could be killed"
    assert not (killed / f"{name}.safetensors").exists()
    subprocess.run(_job(stage, data, killed), check=True, cwd=ROOT)
    subprocess.run(_job(stage, data, full), check=True, cwd=ROOT)
    assert same_tensors(killed / f"{name}.safetensors", full / f"{name}.safetensors"), \
        "resumed training ended with other weights than the uninterrupted run"


def test_vae_training_resumes_exactly(tmp_path):
    data = tmp_path / "episodes"
    write_synthetic_episodes(data, episodes=6, length=48, action_size=1)
    _run_killed_and_full(tmp_path, "vae", data, "vae.train.pt", "vae")


def test_mdnrnn_training_resumes_exactly(tmp_path):
    series = tmp_path / "series"
    rng = np.random.default_rng(0)
    for i in range(5):
        n = int(rng.integers(15, 40))
        done = np.zeros(n, bool)
        done[-1] = True
        save_npz(series / f"ep_{i:06d}.npz", mu=rng.normal(size=(n, 8)).astype(np.float32),
                 logvar=np.full((n, 8), -2, np.float32), action=rng.uniform(-1, 1, (n, 1)).astype(np.float32),
                 done=done)
    write_json(series / "meta.json", {"vae": "synthetic"})
    _run_killed_and_full(tmp_path, "mdnrnn", series, "mdnrnn.train.pt", "mdnrnn")


# ---- what a kill can leave, that tests/test_kill_anywhere.py hits only when its timing is right ----------

def test_a_rerun_removes_the_temporary_files_of_killed_writes(tmp_path):
    from wmlib.episodes import clean_partial_files
    from wmlib.run.pipeline import open_run
    from wmlib.run.profiles import get_config
    cfg = get_config("doom", "smoke")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".run.json.x1.tmp").write_text("{")  # killed while the first command wrote run.json
    open_run(fresh, cfg)
    assert sorted(p.name for p in fresh.iterdir()) == ["run.json"]
    left = [fresh / ".mdnrnn.train.pt.x2.tmp", fresh / "cmaes" / ".state.npz.x3.tmp"]
    for p in left:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"half")
    open_run(fresh, cfg)
    assert not any(p.exists() for p in left)
    packing = tmp_path / "series" / ".packed.tmp"  # a folder: killed while packing the series
    packing.mkdir(parents=True)
    (packing / "mu.npy").write_bytes(b"half")
    assert clean_partial_files(tmp_path / "series") == 1 and not packing.exists()


def test_cmaes_log_after_a_kill_between_its_line_and_the_state(tmp_path):
    """A generation's log line is written before its state: a kill between the two leaves one line too many
    (or half of one), which the resumed run drops and writes again, instead of a generation missing."""
    import json

    from wmlib.cmaes import CMAESConfig, train_cmaes
    from wmlib.controller import ControllerConfig
    ccfg = ControllerConfig(kind="z", z_size=4, rnn_hidden=4, action_size=1)

    def evaluate(solutions, generation):
        return -np.sum((np.asarray(solutions) - 0.3) ** 2, axis=1, keepdims=True).repeat(2, axis=1)

    def train(out, generations):
        cfg = CMAESConfig(popsize=4, rollouts=2, generations=generations, eval_every=0)
        train_cmaes(evaluate, ccfg, cfg, out_dir=out, env="doom", seed=1, log=lambda m: None, progress=False)
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (out / "cmaes" / "log.jsonl").read_text().splitlines()]

    full = train(tmp_path / "full", 3)
    train(tmp_path / "killed", 2)
    log = tmp_path / "killed" / "cmaes" / "log.jsonl"
    with open(log, "a") as f:  # generation 3's line, then the kill, and a 4th half-written by another kill
        f.write(log.read_text().splitlines()[-1].replace('"generation": 2', '"generation": 3') + '\n{"cmaes_st')
    assert train(tmp_path / "killed", 3) == full


def test_cmaes_replays_another_machines_rounding_but_refuses_another_search(tmp_path):
    """A state saved on another machine replays: its candidates' checksums differ from ours in the last bits
    (other OpenBLAS kernels and numpy versions round cma's arithmetic otherwise: up to 1e-8 of the sum after 101
    generations of the CarRacing search). The state of a search with another seed is refused."""
    import pytest

    from wmlib.checkpoint import save_npz
    from wmlib.cmaes import CMAESConfig, train_cmaes
    from wmlib.controller import ControllerConfig
    from wmlib.errors import WMError
    ccfg = ControllerConfig(kind="z", z_size=4, rnn_hidden=4, action_size=1)
    played = []

    def evaluate(solutions, generation):
        played.append(generation)
        return -np.sum((np.asarray(solutions) - 0.3) ** 2, axis=1, keepdims=True).repeat(2, axis=1)

    def train(out, generations, seed=1):
        cfg = CMAESConfig(popsize=4, rollouts=2, generations=generations, eval_every=0)
        return train_cmaes(evaluate, ccfg, cfg, out_dir=out, env="doom", seed=seed, log=lambda m: None,
                           progress=False)

    c = train(tmp_path / "run", 3)
    state = tmp_path / "run" / "cmaes" / "state.npz"
    with np.load(state) as f:
        saved = dict(f)
    save_npz(state, fitness=saved["fitness"], returns=saved["returns"],
             checksum=saved["checksum"] * (1 + 1e-8))
    played.clear()
    assert np.array_equal(train(tmp_path / "run", 3).get_flat(), c.get_flat()) and not played
    train(tmp_path / "other", 3, seed=2)
    (tmp_path / "other" / "cmaes" / "state.npz").replace(state)
    with pytest.raises(WMError, match="does not replay"):
        train(tmp_path / "run", 3)


def _toy_search(out, generations, *, diagonal_from=None, resizes=(), seed=1, played=None):
    from wmlib.cmaes import CMAESConfig, train_cmaes
    from wmlib.controller import ControllerConfig
    ccfg = ControllerConfig(kind="z", z_size=4, rnn_hidden=4, action_size=1)
    cfg = CMAESConfig(popsize=4, rollouts=2, generations=generations, eval_every=0, diagonal_from=diagonal_from,
                      resizes=resizes)

    def evaluate(solutions, generation):
        if played is not None:
            played.append(generation)
        rollouts = cfg.sizes_at(generation)[1]
        # each rollout its own noise, a function of the candidate: a replay must hand cma the same fitness
        noise = np.sin(1e3 * np.asarray(solutions).sum(1, keepdims=True) * np.arange(1, rollouts + 1))
        return -np.sum((np.asarray(solutions) - 0.3) ** 2, axis=1, keepdims=True) + 0.01 * noise

    c = train_cmaes(evaluate, ccfg, cfg, out_dir=out, env="doom", seed=seed, log=lambda m: None, progress=False)
    import json
    log = [json.loads(x) for x in (out / "cmaes" / "log.jsonl").read_text().splitlines()]
    return c.get_flat(), [{k: v for k, v in x.items() if k != "seconds"} for x in log]


def test_a_full_search_goes_on_as_sep_cmaes_and_resumes_without_its_full_generations(tmp_path):
    """diagonal_from=G: generations G+1.. are sep-CMA-ES from the full search's mean and step size at G
    (cmaes/switch.npz). Killed and resumed anywhere, it ends where the uninterrupted search ends; once it has
    switched, its replay never asks the full generations again, so a machine whose BLAS would draw them
    otherwise (here: their checksums spoiled) still resumes it."""
    import pytest

    from wmlib.checkpoint import save_npz
    from wmlib.errors import WMError
    full_c, full_log = _toy_search(tmp_path / "full", 6, diagonal_from=3)
    assert [x.get("diagonal", False) for x in full_log] == [False] * 3 + [True] * 3
    with np.load(tmp_path / "full" / "cmaes" / "switch.npz") as f:
        assert int(f["generation"]) == 3 and f["mean"].shape == full_c.shape and f["sigma"] > 0
    # a full search saved before the option, given diagonal_from at the generation it has reached
    _toy_search(tmp_path / "run", 3)
    _toy_search(tmp_path / "run", 4, diagonal_from=3)
    state = tmp_path / "run" / "cmaes" / "state.npz"
    with np.load(state) as f:
        saved = dict(f)
    saved["checksum"][:3] += 1.0  # the full generations no longer replay here
    save_npz(state, **saved)
    played = []
    c, log = _toy_search(tmp_path / "run", 6, diagonal_from=3, played=played)
    assert played == [4, 5] and log == full_log and np.array_equal(c, full_c)
    # a full search past the generation where the settings switch, without the switch's file, is refused
    _toy_search(tmp_path / "late", 4)
    with pytest.raises(WMError, match="other settings"):
        _toy_search(tmp_path / "late", 6, diagonal_from=3)
    (tmp_path / "run" / "cmaes" / "switch.npz").replace(tmp_path / "switch.npz")
    with pytest.raises(WMError, match="switch.npz"):
        _toy_search(tmp_path / "run", 6, diagonal_from=3)
    # a switch beside the state of a search that had not reached it
    _toy_search(tmp_path / "short", 2, diagonal_from=3)
    (tmp_path / "switch.npz").replace(tmp_path / "short" / "cmaes" / "switch.npz")
    with pytest.raises(WMError, match="different searches"):
        _toy_search(tmp_path / "short", 6, diagonal_from=3)


def test_a_sep_search_resizes_its_population_and_resumes_anywhere(tmp_path):
    """resizes=((G, pop, rollouts),): after generation G, sep-CMA-ES starts again from the mean, step size and
    per-coordinate scales there (cmaes/resize-G.npz) with the new population and rollouts. Killed after any
    generation and resumed, it ends where the uninterrupted search ends; a resize may be added while the
    search has not reached it, never to generations already played; a missing start file is refused."""
    import pytest

    from wmlib.cmaes import CMAESConfig, make_es
    from wmlib.errors import WMError
    resizes = ((4, 6, 3, 0.3),)
    full_c, full_log = _toy_search(tmp_path / "full", 7, diagonal_from=2, resizes=resizes)
    assert [(x["popsize"], x["rollouts"]) for x in full_log] == [(4, 2)] * 4 + [(6, 3)] * 3
    with np.load(tmp_path / "full" / "cmaes" / "state.npz") as f:
        fitness, returns = f["fitness"], f["returns"]
    assert fitness.shape == (7, 6) and returns.shape == (7, 6, 3)
    assert np.isnan(returns[:4, 4:]).all() and np.isnan(returns[:4, :, 2:]).all() and not np.isnan(returns[4:]).any()
    assert not np.isnan(returns[:4, :4, :2]).any()
    with np.load(tmp_path / "full" / "cmaes" / "resize-4.npz") as f:
        start = dict(f)
    assert int(start["generation"]) == 4 and (int(start["popsize"]), int(start["rollouts"])) == (6, 3)
    assert not np.allclose(start["scales"], 1.0)  # sep-CMA-ES had learnt per-coordinate step sizes
    cfg = CMAESConfig(popsize=4, rollouts=2, diagonal_from=2, resizes=resizes)
    es = make_es(len(start["mean"]), cfg, 1, start={**start, "min_std": 0.0})
    assert es.popsize == 6 and np.allclose(es.stds, start["sigma"] * start["scales"])
    # the floor: every coordinate's std at least min_std, from the start and after generations of selection
    assert start["min_std"] == 0.3 and (start["sigma"] * start["scales"]).min() < 0.3
    es = make_es(len(start["mean"]), cfg, 1, start=start)
    for _ in range(20):
        x = np.asarray(es.ask())
        es.tell(list(x), list(np.sum((x - 0.3) ** 2, axis=1)))
        assert es.stds.min() >= 0.3 * (1 - 1e-9)

    for k in range(1, 7):  # killed after generation k
        _toy_search(tmp_path / f"k{k}", k, diagonal_from=2, resizes=resizes)
        played = []
        c, log = _toy_search(tmp_path / f"k{k}", 7, diagonal_from=2, resizes=resizes, played=played)
        assert played == list(range(k, 7)) and log == full_log and np.array_equal(c, full_c), k

    # decided while the search runs: a resize ahead of the search is welcome, even where a resize's file from
    # other sizes was left by a kill
    _toy_search(tmp_path / "late", 4, diagonal_from=2)
    _toy_search(tmp_path / "other", 5, diagonal_from=2, resizes=((4, 8, 1),))  # no floor
    (tmp_path / "other" / "cmaes" / "resize-4.npz").replace(tmp_path / "late" / "cmaes" / "resize-4.npz")
    c, log = _toy_search(tmp_path / "late", 7, diagonal_from=2, resizes=resizes)
    assert log == full_log and np.array_equal(c, full_c)
    # ... but not one at a generation already played
    _toy_search(tmp_path / "played", 5, diagonal_from=2)
    with pytest.raises(WMError, match="other settings"):
        _toy_search(tmp_path / "played", 7, diagonal_from=2, resizes=resizes)
    (tmp_path / "k6" / "cmaes" / "resize-4.npz").unlink()
    with pytest.raises(WMError, match="resize-4.npz"):
        _toy_search(tmp_path / "k6", 7, diagonal_from=2, resizes=resizes)
    with pytest.raises(ValueError, match="after diagonal_from"):
        CMAESConfig(diagonal_from=None, resizes=((4, 6, 3),))
    with pytest.raises(ValueError, match="after diagonal_from"):
        CMAESConfig(diagonal_from=2, resizes=((5, 6, 3), (4, 8, 2)))
    with pytest.raises(ValueError, match="min_std"):
        CMAESConfig(diagonal_from=2, resizes=((5, 6, 3, 0.1, 9),))


def test_the_mean_is_scored_every_few_generations_with_each_tracks_return(tmp_path):
    """evaluate_mean every eval_every generations: its mean and std go into the log line, and, where it returns
    them, each episode's return (the same tracks each time, so that two generations compare paired)."""
    import json

    from wmlib.cmaes import CMAESConfig, train_cmaes
    from wmlib.controller import ControllerConfig
    ccfg = ControllerConfig(kind="z", z_size=4, rnn_hidden=4, action_size=1)
    cfg = CMAESConfig(popsize=4, rollouts=1, generations=4, eval_every=2, eval_episodes=3)

    def evaluate(solutions, generation):
        return -np.sum((np.asarray(solutions) - 0.3) ** 2, axis=1, keepdims=True)

    for name, scored in (("paired", lambda p: (1.0, 0.5, np.array([0.5, 1.0, 1.5]) + p.sum())),
                         ("summary", lambda p: (1.0, 0.5))):
        train_cmaes(evaluate, ccfg, cfg, out_dir=tmp_path / name, env="doom", seed=1, evaluate_mean=scored,
                    log=lambda m: None, progress=False)
        log = [json.loads(x) for x in (tmp_path / name / "cmaes" / "log.jsonl").read_text().splitlines()]
        assert ["eval_mean" in x for x in log] == [False, True, False, True]
        assert all(("eval_returns" in x) == (name == "paired" and "eval_mean" in x) for x in log)
    log = [json.loads(x) for x in (tmp_path / "paired" / "cmaes" / "log.jsonl").read_text().splitlines()]
    assert all(len(x["eval_returns"]) == 3 and abs(x["eval_returns"][1] - x["eval_returns"][0] - 0.5) < 0.02
               for x in log if "eval_mean" in x)
