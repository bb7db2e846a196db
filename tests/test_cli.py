"""The command line end to end (smoke profile), and every kind of bad input it must refuse clearly."""
import json
import shutil

import numpy as np
import pytest

from .helpers import wmlib_cli, wmlib_main

ARTIFACTS = ["run.json", "episodes", "vae.safetensors", "vae.json", "series/packed/mu.npy", "initial_z.npz",
             "mdnrnn.safetensors", "mdnrnn.json", "controller.safetensors", "controller.json",
             "cmaes/state.npz", "evaluation.json"]


def user_error(r, *needles):
    """Exit code 2, one paragraph naming the problem, no traceback."""
    assert r.returncode == 2, f"exit {r.returncode}, stderr:\n{r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, f"{n!r} not in: {r.stderr}"


@pytest.fixture(scope="module", params=["doom", "carracing"])
def smoke_run(request, smoke_runs):
    """(env, run dir) of the smoke profile's `run`, shared with tests/test_kill_anywhere.py (conftest.py)."""
    return request.param, smoke_runs(request.param)


def test_run_writes_every_artifact(smoke_run):
    env, run_dir = smoke_run
    for a in ARTIFACTS:
        assert (run_dir / a).exists(), f"{a} missing"
    assert len(list((run_dir / "episodes").glob("ep_*.npz"))) == 4
    res = json.loads((run_dir / "evaluation.json").read_text())
    assert res["episodes"] == 2 and len(res["returns"]) == 2
    log = [json.loads(line) for line in (run_dir / "cmaes" / "log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in log] == [1, 2]
    assert not list(run_dir.rglob("*.tmp")), "temporary files left behind"


def test_evaluate_json(smoke_run):
    env, run_dir = smoke_run
    r = wmlib_cli("evaluate", "--env", env, "--weights", run_dir, "--episodes", "2", "--seed", "5",
                  "--max-steps", "30", "--workers", "1", "--json", "--no-progress", check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["episodes"] == 2 and len(res["returns"]) == 2
    assert res["mean"] == pytest.approx(np.mean(res["returns"])) and res["std"] == pytest.approx(np.std(res["returns"]))
    assert all(s <= 30 for s in res["steps"])
    again = json.loads(wmlib_cli("evaluate", "--env", env, "--weights", run_dir, "--episodes", "2", "--seed", "5",
                                 "--max-steps", "30", "--workers", "1", "--json", "--no-progress",
                                 check=True).stdout.strip().splitlines()[-1])
    assert again["returns"] == res["returns"], "the same seed must give the same evaluation"


def test_rerunning_a_finished_run_redoes_nothing(smoke_run):
    env, run_dir = smoke_run
    before = (run_dir / "vae.safetensors").stat().st_mtime_ns
    r = wmlib_cli("run", "--env", env, "--profile", "smoke", "--run-dir", run_dir, "--no-progress", check=True)
    assert "already trained" in r.stderr
    assert (run_dir / "vae.safetensors").stat().st_mtime_ns == before


# ---- bad input ------------------------------------------------------------------------------------

def test_unknown_env_name():
    r = wmlib_main("info", "--env", "pong")
    assert r.returncode == 2 and "carracing" in r.stderr and "Traceback" not in r.stderr


def test_unknown_profile(tmp_path):
    r = wmlib_main("collect", "--env", "doom", "--profile", "huge", "--run-dir", tmp_path / "x")
    assert r.returncode == 2 and "smoke" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["collect", "--episodes", "0"], "--episodes"),
    (["collect", "--episodes", "-3"], "--episodes"),
    (["collect", "--workers", "-1"], "--workers"),
    (["train-controller", "--generations", "0"], "--generations"),
])
def test_out_of_range_values(tmp_path, args, needle):
    r = wmlib_main(*args, "--env", "doom", "--profile", "smoke", "--run-dir", tmp_path / "run")
    user_error(r, needle)


def test_evaluate_out_of_range(smoke_run):
    env, run_dir = smoke_run
    user_error(wmlib_main("evaluate", "--env", env, "--weights", run_dir, "--episodes", "0"), "--episodes")
    user_error(wmlib_main("evaluate", "--env", env, "--weights", run_dir, "--max-steps", "0"), "--max-steps")


def test_missing_weights_directory(tmp_path):
    user_error(wmlib_main("evaluate", "--env", "doom", "--weights", tmp_path / "nope"), "does not exist")


def test_half_written_run_directory(smoke_run, tmp_path):
    env, run_dir = smoke_run
    half = tmp_path / "half"
    shutil.copytree(run_dir, half)
    (half / "controller.safetensors").unlink()
    user_error(wmlib_main("evaluate", "--env", env, "--weights", half, "--episodes", "1"),
               "controller.safetensors", "train-controller")
    (half / "vae.safetensors").unlink()
    user_error(wmlib_main("train-mdnrnn", "--env", env, "--profile", "smoke", "--run-dir", half),
               "vae.safetensors", "train-vae")


def test_stage_before_its_input(tmp_path):
    user_error(wmlib_main("train-vae", "--env", "doom", "--profile", "smoke", "--run-dir", tmp_path / "new"),
               "no episode files", "collect")


def test_weights_of_the_other_env(smoke_run):
    env, run_dir = smoke_run
    other = "carracing" if env == "doom" else "doom"
    user_error(wmlib_main("evaluate", "--env", other, "--weights", run_dir, "--episodes", "1"),
               f"trained for env '{env}'", f"--env {env}")


def test_checkpoint_of_the_wrong_shape(smoke_run, tmp_path):
    env, run_dir = smoke_run
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    meta = json.loads((bad / "mdnrnn.json").read_text())
    meta["config"]["hidden_size"] = 64
    (bad / "mdnrnn.json").write_text(json.dumps(meta))
    user_error(wmlib_main("evaluate", "--env", env, "--weights", bad, "--episodes", "1"), "mdnrnn", "does not match")


def test_corrupt_checkpoint(smoke_run, tmp_path):
    env, run_dir = smoke_run
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    data = (bad / "vae.safetensors").read_bytes()
    (bad / "vae.safetensors").write_bytes(data[: len(data) // 3])
    user_error(wmlib_main("evaluate", "--env", env, "--weights", bad, "--episodes", "1"), "vae.safetensors", "corrupt")


def test_corrupt_episode_file(smoke_run, tmp_path):
    env, run_dir = smoke_run
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    for f in ("vae.safetensors", "vae.json", "vae.train.pt"):
        (bad / f).unlink()
    ep = bad / "episodes" / "ep_000001.npz"
    ep.write_bytes(ep.read_bytes()[:1000])
    user_error(wmlib_main("train-vae", "--env", env, "--profile", "smoke", "--run-dir", bad), "ep_000001.npz",
               "Delete it")


def test_run_directory_of_another_profile(smoke_run):
    env, run_dir = smoke_run
    user_error(wmlib_main("collect", "--env", env, "--profile", "default", "--run-dir", run_dir),
               "profile", "smoke")


def test_run_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "stuff.txt").write_text("mine")
    user_error(wmlib_main("collect", "--env", "doom", "--profile", "smoke", "--run-dir", tmp_path),
               "not a wmlib run directory")


def test_corrupt_run_json(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    user_error(wmlib_main("collect", "--env", "doom", "--profile", "smoke", "--run-dir", tmp_path), "run.json")


# ---- the dream's commands ---------------------------------------------------------------------------

def test_export_ships_fp16_weights_with_a_card(smoke_run, tmp_path):
    env, run_dir = smoke_run
    out = tmp_path / "pretrained"
    if env == "carracing":  # the same code path; a full CarRacing evaluation is 1,000 steps per episode
        user_error(wmlib_main("export", "--env", "doom", "--run-dir", run_dir, "--out", out), "carracing run")
        return
    r = wmlib_cli("export", "--env", env, "--run-dir", run_dir, "--out", out, "--episodes", "2", "--workers", "1",
                  "--no-progress", check=True)
    card = json.loads((out / "model_card.json").read_text())
    assert card["score"]["episodes"] == 2 and card["seed"] == 0 and card["data"]["episodes"] == 4
    assert set(card["training_seconds"]) >= {"collect", "vae", "mdnrnn", "controller"}
    assert json.loads(r.stdout.strip().splitlines()[-1])["mean"] == card["score"]["mean"]
    from safetensors.torch import load_file
    assert all(t.dtype.itemsize == 2 for t in load_file(str(out / "vae.safetensors")).values())
    res = json.loads(wmlib_cli("evaluate", "--env", env, "--weights", out, "--episodes", "2", "--workers", "1",
                               "--json", "--no-progress", check=True).stdout.strip().splitlines()[-1])
    assert res["mean"] == card["score"]["mean"], "the card's score must be the stored weights' score"


def test_dream_commands_refuse_bad_input(smoke_run, tmp_path):
    env, run_dir = smoke_run
    user_error(wmlib_main("tau-sweep", "--weights", run_dir, "--taus", "0.5,abc"), "--taus")
    user_error(wmlib_main("tau-sweep", "--weights", run_dir, "--taus", "0"), "tau")
    user_error(wmlib_main("dream-check", "--weights", tmp_path / "nope"), "does not exist")
    user_error(wmlib_main("dream-check", "--weights", run_dir, "--tau", "-1"), "--tau")
    user_error(wmlib_main("train-controller", "--env", env, "--profile", "smoke", "--run-dir", run_dir, "--tau", "0"),
               "--tau")


def test_where_the_controller_trains(smoke_run):
    """Doom's C trains in the dream (the profile says so); CarRacing's M has no reward to dream with."""
    env, run_dir = smoke_run
    settings = json.loads((run_dir / "cmaes" / "settings.json").read_text())
    if env == "doom":
        assert settings["cmaes"]["where"] == "dream"
        return
    assert settings["cmaes"]["where"] == "real"
    user_error(wmlib_main("train-controller", "--env", env, "--profile", "smoke", "--run-dir", run_dir,
                         "--where", "dream"), "no reward", "--where real")


def test_iterative_procedure(smoke_run, tmp_path):
    """One round: new episodes played by the agent, M trained on, C trained again in a fresh CMA-ES."""
    env, run_dir = smoke_run
    if env != "doom":
        user_error(wmlib_main("iterate", "--env", env, "--profile", "smoke", "--run-dir", run_dir,
                             "--iterations", "1"), "dream")
        return
    it = tmp_path / "it"
    shutil.copytree(run_dir, it)
    before = json.loads((it / "mdnrnn.json").read_text())["steps"]
    wmlib_cli("iterate", "--env", env, "--profile", "smoke", "--run-dir", it, "--iterations", "1", "--no-progress",
              check=True)
    eps = sorted(p.name for p in (it / "episodes").glob("ep_*.npz"))
    assert len(eps) == 6
    with np.load(it / "episodes" / eps[-1]) as f:
        assert str(f["policy"]) == "agent"
    assert json.loads((it / "mdnrnn.json").read_text())["steps"] == before + 5
    assert (it / "cmaes_iter1" / "state.npz").exists()
    assert len(np.load(it / "series" / "packed" / "lengths.npy")) == 6
    # Round 1 has its own CMA-ES seed: its candidates differ from round 0's, and so does C_1.
    with np.load(it / "cmaes" / "state.npz") as a, np.load(it / "cmaes_iter1" / "state.npz") as b:
        assert not np.isclose(a["checksum"][0], b["checksum"][0])
    c1 = (it / "controller.safetensors").read_bytes()
    assert c1 != (run_dir / "controller.safetensors").read_bytes()
    assert json.loads((it / "controller.json").read_text())["cmaes_state"] == "cmaes_iter1"
    # train-controller replays round 0's finished CMA-ES: it must not put C_0 back in place of C_1.
    r = wmlib_cli("train-controller", "--env", env, "--profile", "smoke", "--run-dir", it, "--no-progress",
                  check=True)
    assert (it / "controller.safetensors").read_bytes() == c1, r.stderr


def test_ablation_table(smoke_run, tmp_path):
    """CarRacing's ablation: each kind trained with the same CMA-ES budget, scored, tabled beside the paper."""
    env, run_dir = smoke_run
    if env != "carracing":
        user_error(wmlib_main("ablation", "--weights", run_dir, "--profile", "smoke"), "CarRacing")
        return
    user_error(wmlib_main("ablation", "--weights", run_dir, "--kinds", "z,zz"), "unknown controller kinds")
    out = tmp_path / "abl"
    r = wmlib_cli("ablation", "--weights", run_dir, "--profile", "smoke", "--kinds", "z,zh", "--generations", "1",
                  "--episodes", "2", "--out", out, "--json", "--no-progress", check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert [row["kind"] for row in res["rows"]] == ["z", "zh"]
    assert all(len(row["curve"]) == 1 and np.isfinite(row["mean"]) for row in res["rows"])
    assert "| V only, linear (z) |" in r.stdout and "906 ± 21" in r.stdout
    assert (out / "z" / "controller.safetensors").exists() and (out / "ablation.md").exists()
    assert json.loads((out / "z" / "controller.json").read_text())["config"]["kind"] == "z"


def test_ablation_reports_each_newly_scored_kind(smoke_runs, tmp_path):
    """after_kind runs once per kind as soon as it is scored (how scripts/ablation_carracing.py saves its
    progress), and not again for a kind read back from an earlier run."""
    import dataclasses

    from wmlib.studies.ablation import ablation
    from wmlib.run.profiles import get_config

    cfg = get_config("carracing", "smoke", 0)
    cfg.cmaes = dataclasses.replace(cfg.cmaes, generations=1, workers=1)
    done = []
    ablation(smoke_runs("carracing"), cfg, tmp_path, episodes=2, kinds=("z", "zh"), log=lambda *_: None, progress=False,
             after_kind=done.append)
    assert done == ["z", "zh"] and (tmp_path / "z" / "scores.json").exists()
    ablation(smoke_runs("carracing"), cfg, tmp_path, episodes=2, kinds=("z", "zh"), log=lambda *_: None, progress=False,
             after_kind=done.append)
    assert done == ["z", "zh"]


def test_collect_policy_option(tmp_path):
    """--policy picks the data policy of the random rollouts; an unknown one is a clear error."""
    user_error(wmlib_main("collect", "--env", "carracing", "--profile", "smoke", "--run-dir", tmp_path / "bad",
                          "--policy", "held_random"), "unknown data policy", "brownian")
    run_dir = tmp_path / "brownian"
    r = wmlib_main("collect", "--env", "carracing", "--profile", "smoke", "--run-dir", run_dir, "--episodes", "1",
                   "--workers", "1", "--policy", "brownian", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((run_dir / "run.json").read_text())["collect"]["policy"] == "brownian"
    with np.load(next((run_dir / "episodes").glob("ep_*.npz"))) as f:
        assert str(f["policy"]) == "brownian"
