"""The scripts that trained the shipped weights: they parse, and the recipes they call (wmlib.run.recipes) continue
M from shipped weights and carry the ablation's progress."""
import shutil
import subprocess
import sys

import pytest
import torch

from wmlib.checkpoint import load_model, load_torch_state, save_model
from wmlib.controller import Controller, ControllerConfig
from wmlib.errors import WMError
from wmlib.mdnrnn import MDNRNN, MDNRNNConfig
from wmlib.run import recipes
from wmlib.train_mdnrnn import MDNTrainConfig
from wmlib.series import encode_series, pack_series
from wmlib.train_mdnrnn import train_mdnrnn
from wmlib.vae import ConvVAE, VAEConfig

from .helpers import ROOT, write_synthetic_episodes


def test_the_scripts_parse_their_arguments():
    for args in (["pretrained_carracing.py", "--help"], ["ablation_carracing.py", "--help"],
                 ["pretrained_doom.py", "gpu", "--help"],
                 ["pretrained_doom.py", "iterate", "--help"], ["carracing_v2.py", "--help"]):
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / args[0]), *args[1:]], capture_output=True,
                           text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert "usage" in r.stdout


def test_m_continues_from_weights_alone(tmp_path):
    """train_mdnrnn(start=M, start_step=7) continues an M of which only the weights are left (how the Doom
    script's iterate continues the GPU run's M) at step 7; once the run has a training state, that wins."""
    config = MDNRNNConfig(z_size=4, action_size=1, hidden_size=8, restart_input=True, done_head=True)
    src, run = tmp_path / "src", tmp_path / "run"
    m = MDNRNN(config)
    with torch.no_grad():  # unlike the M that train_mdnrnn would build from its seed
        for p in m.parameters():
            p.add_(0.5)
    save_model(m, src, "mdnrnn", "doom", extra={"steps": 7})
    save_model(Controller(ControllerConfig(kind="zch", z_size=4, rnn_hidden=8, action_size=1)), src, "controller",
               "doom")
    recipes.start_from(run, src, shipped_v=ROOT / "pretrained" / "doom")
    assert (run / "mdnrnn.safetensors").exists() and not (run / "mdnrnn.train.pt").exists()

    write_synthetic_episodes(run / "episodes", 3, 40, action_size=1, done_last=True)
    vae = ConvVAE(VAEConfig(z_size=4)).eval()
    save_model(vae, run, "vae", "doom")  # replaces the shipped V (z = 64) that start_from copied
    encode_series(vae, run / "vae.safetensors", run / "episodes", run / "series", progress=False)
    packed = pack_series(run / "series")
    start = load_model(MDNRNN, MDNRNNConfig, src, "mdnrnn", "doom")[0]
    logs = []
    continued = train_mdnrnn(packed, run, "doom", config=config,
                             train=MDNTrainConfig(steps=9, batch_size=2, seq_len=10), seed=0, device="cpu",
                             progress=False, log=logs.append, start=start, start_step=7)
    assert any("continuing M from given weights at step 7" in line for line in logs)
    assert load_torch_state(run / "mdnrnn.train.pt", ("step",))["step"] == 9
    # it started from the given weights, not from a fresh M
    changed = [(a - b).abs().max().item() for a, b in zip(continued.state_dict().values(), m.state_dict().values())]
    assert max(changed) < 0.1

    # The next round asks for more steps: the saved state goes on (step 9 -> 11), the start weights are ignored.
    logs = []
    train_mdnrnn(packed, run, "doom", config=config, train=MDNTrainConfig(steps=11, batch_size=2, seq_len=10), seed=0,
                 device="cpu", progress=False, log=logs.append, start=start, start_step=7)
    assert any("continuing M at step 9" in line for line in logs)
    assert load_torch_state(run / "mdnrnn.train.pt", ("step",))["step"] == 11

    other = MDNRNN(MDNRNNConfig(z_size=4, action_size=1, hidden_size=16, restart_input=True, done_head=True))
    with pytest.raises(WMError, match="pass weights of this M"):
        train_mdnrnn(packed, tmp_path / "fresh", "doom", config=config,
                     train=MDNTrainConfig(steps=9, batch_size=2, seq_len=10), seed=0, device="cpu", progress=False,
                     log=logs.append, start=other, start_step=7)


def test_ablation_script_replays_a_runs_own_c_and_ships_the_table(tmp_path):
    """The ablation's zh controller starts from the run's own first G generations (same settings and seed):
    train_cmaes replays them without playing a generation and lands on the C the run had after G. Asking
    for more generations than the run has is refused; the shipped table carries the command."""
    import dataclasses
    import json

    import numpy as np

    from wmlib.cmaes import train_cmaes

    cfg = recipes.carracing_ablation(3, 1)
    assert (cfg.cmaes.popsize, cfg.cmaes.rollouts, cfg.cmaes.max_steps) == (16, 2, 1000)
    cmaes = dataclasses.replace(cfg.cmaes, popsize=4, rollouts=1)
    ccfg = ControllerConfig(kind="zh", z_size=2, rnn_hidden=3)
    run = tmp_path / "run"

    def fitness(solutions, generation):  # a smooth stand-in for the game: closer to 0.3 scores more
        return -((np.asarray(solutions) - 0.3) ** 2).sum(1, keepdims=True)

    train_cmaes(fitness, ccfg, dataclasses.replace(cmaes, generations=3), out_dir=run, env="carracing", seed=0,
                log=lambda *_: None, progress=False)
    after3 = load_model(Controller, ControllerConfig, run, "controller", "carracing")[0].get_flat()
    train_cmaes(fitness, ccfg, dataclasses.replace(cmaes, generations=5), out_dir=run, env="carracing", seed=0,
                log=lambda *_: None, progress=False)

    zh = tmp_path / "ablation" / "zh"
    with pytest.raises(WMError, match="has 5 generations, the ablation asks for 6"):
        recipes.seed_zh(run, zh, 6)
    assert not (zh / "cmaes").exists()
    recipes.seed_zh(run, zh, 3)
    assert len((zh / "cmaes" / "log.jsonl").read_text().splitlines()) == 3

    def never(solutions, generation):
        raise AssertionError("a replayed generation was played again")

    c = train_cmaes(never, ccfg, dataclasses.replace(cmaes, generations=3), out_dir=zh, env="carracing", seed=0,
                    log=lambda *_: None, progress=False)
    np.testing.assert_array_equal(c.get_flat(), after3)

    work, dest = tmp_path / "work", tmp_path / "shipped"
    work.mkdir()
    (work / "ablation.json").write_text(json.dumps({"rows": [], "markdown": "| table |", "weights": "x",
                                                    "episodes": 7}))
    recipes.ship(work, dest, "python scripts/ablation_carracing.py --generations 3", "runs/run", 1)
    shipped = json.loads((dest / "ablation.json").read_text())
    assert shipped["command"].endswith("--generations 3")
    assert "V and M of runs/run" in shipped["weights"] and "7 unseen tracks (evaluation seed 1)" in shipped["weights"]
    assert (dest / "ablation.md").read_text() == "| table |\n"


def test_ablation_progress_carries_cmaes_to_a_fresh_work_folder(tmp_path):
    """What a fresh clone gets: the progress folder (CMA-ES state, log, settings, score) copied from one work
    folder restores into another, whose CMA-ES then replays without playing and goes on exactly as the
    uninterrupted run; a kind that already has local state is not overwritten."""
    import dataclasses
    import json

    import numpy as np

    from wmlib.cmaes import train_cmaes

    cmaes = dataclasses.replace(recipes.carracing_ablation(3, 1).cmaes, popsize=4, rollouts=1)
    ccfg = ControllerConfig(kind="z", z_size=2)

    def fitness(solutions, generation):
        return -((np.asarray(solutions) - 0.3) ** 2).sum(1, keepdims=True)

    def train(folder, generations, evaluate=fitness):
        return train_cmaes(evaluate, ccfg, dataclasses.replace(cmaes, generations=generations), out_dir=folder,
                           env="carracing", seed=0, log=lambda *_: None, progress=False).get_flat()

    straight = train(tmp_path / "straight" / "z", 3)
    first, progress = tmp_path / "first", tmp_path / "shipped" / "progress-3"
    train(first / "z", 2)
    (first / "zh").mkdir(parents=True)  # a kind without CMA-ES state is not saved
    assert recipes.save_progress(first, progress) == ["z"]
    assert sorted(p.name for p in (progress / "z" / "cmaes").iterdir()) == ["log.jsonl", "settings.json", "state.npz"]
    assert not (progress / "zh").exists()

    fresh = tmp_path / "fresh"
    assert recipes.restore_progress(progress.parent, 3, fresh) == ["z"]
    assert recipes.restore_progress(progress.parent, 3, fresh) == []  # local state wins from now on

    def never(solutions, generation):
        raise AssertionError("a saved generation was played again")

    np.testing.assert_array_equal(train(fresh / "z", 2, never), train(first / "z", 2, never))
    np.testing.assert_array_equal(train(fresh / "z", 3), straight)
    assert [json.loads(line)["generation"] for line in (fresh / "z" / "cmaes" / "log.jsonl").read_text().splitlines()] \
        == [1, 2, 3]
    (fresh / "z" / "scores.json").write_text(json.dumps({"kind": "z", "mean": 1.0}))
    recipes.save_progress(fresh, progress)  # replaces the folder: the score travels too
    assert json.loads((progress / "z" / "scores.json").read_text())["mean"] == 1.0
    assert sorted(p.name for p in progress.iterdir()) == ["z"]  # no .tmp or .old folder left

    # A longer ablation (5 generations) goes on from the 3 saved ones, without their score; a shorter one
    # (2) cannot use them.
    longer = tmp_path / "longer"
    assert recipes.restore_progress(progress.parent, 5, longer) == ["z"]
    assert not (longer / "z" / "scores.json").exists()
    assert recipes.restore_progress(progress.parent, 2, tmp_path / "shorter") == []
    played = []

    def count(solutions, generation):
        played.append(generation)
        return fitness(solutions, generation)

    np.testing.assert_array_equal(train(longer / "z", 5, count), train(tmp_path / "straight" / "z", 5))
    assert played == [3, 4]


def test_carracing_v2_progress_goes_on_from_a_fresh_clone(tmp_path):
    """scripts/carracing_v2.py --save-progress, then stage c on a machine without the run: the same V, M and
    CMA-ES state, and V's and M's measurements, come back; a run already there is never overwritten."""
    import json
    run, progress, fresh = tmp_path / "run", tmp_path / "progress", tmp_path / "fresh"
    wm = run / "wm"
    save_model(ConvVAE(VAEConfig()), wm, "vae", "carracing", dtype=torch.float16)
    save_model(MDNRNN(MDNRNNConfig()), wm, "mdnrnn", "carracing", dtype=torch.float16)
    (wm / "cmaes").mkdir(parents=True)
    (wm / "cmaes" / "state.npz").write_bytes(b"state")
    (wm / "cmaes" / "resize-1.npz").write_bytes(b"start of a resized population")
    lines = [{"generation": g, "mean_fitness": f, "best_fitness": f + 30, "seconds": 10.0}
             for g, f in ((1, -60.0), (2, -40.0))]
    (wm / "cmaes" / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (wm / "run.json").write_text("{}")
    (run / "m_eval.json").write_text('{"nll_held_out": 0.95}')
    (wm / "mdnrnn.train.pt").write_bytes(b"not needed to go on")
    saved = recipes.carracing_v2_save(run, progress)
    assert "mdnrnn.train.pt" not in saved and "cmaes/state.npz" in saved and "m_eval.json" in saved
    assert (progress / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((progress / "progress.json").read_text())
    assert summary["generations"] == 2 and summary["best_mean_fitness"] == -40.0 and summary["cmaes_seconds"] == 20
    assert recipes.carracing_v2_restore(progress, fresh)
    for rel in ("vae.safetensors", "mdnrnn.safetensors", "cmaes/state.npz", "cmaes/log.jsonl", "cmaes/resize-1.npz"):
        assert (fresh / "wm" / rel).read_bytes() == (wm / rel).read_bytes(), rel
    assert recipes.is_float16(fresh / "wm" / "vae.safetensors")
    assert (fresh / "m_eval.json").exists()
    (fresh / "wm" / "cmaes" / "state.npz").write_bytes(b"went on")
    assert not recipes.carracing_v2_restore(progress, fresh)  # the run there wins
    assert (fresh / "wm" / "cmaes" / "state.npz").read_bytes() == b"went on"


def test_carracing_v2_ship_writes_weights_curve_and_card(tmp_path):
    """scripts/carracing_v2.py --ship: the last generation's C with V and M in fp16, the learning curve and a
    card with the measurements, the compute and the score of the stored weights; a C that is behind its log
    (a search between its two writes) is refused."""
    import json

    import numpy as np

    from wmlib.checkpoint import save_npz, write_json
    from wmlib.run.pipeline import open_run
    run, out = tmp_path / "run", tmp_path / "out"
    wm = run / "wm"
    cfg = recipes.carracing_v2()
    open_run(wm, cfg)
    save_model(ConvVAE(VAEConfig()), wm, "vae", "carracing", dtype=torch.float16)
    save_model(MDNRNN(MDNRNNConfig()), wm, "mdnrnn", "carracing", dtype=torch.float16)
    save_npz(wm / "initial_z.npz", mu=np.zeros((3, 32), np.float32), logvar=np.zeros((3, 32), np.float32))
    (wm / "cmaes").mkdir()
    write_json(wm / "cmaes" / "settings.json", {"cmaes": {"popsize": 16, "rollouts": 4, "max_steps": 1000,
                                                          "stall_steps": 100,
                                                          "resizes": [[1, 32, 4, 0.05], [2, 64, 4, 0.0]]}})
    lines = [{"generation": 1, "mean_fitness": -60.0, "best_fitness": -20.0, "seconds": 100.0},
             {"generation": 2, "mean_fitness": -40.0, "best_fitness": 10.0, "seconds": 120.0,
              "eval_mean": 12.5, "eval_std": 3.0, "workers": 16}]  # played on a 16-core machine
    (wm / "cmaes" / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    write_json(run / "v_eval.json", {"mse_agent_held_out": 0.0011, "epochs": 1.0})
    write_json(run / "compute.json", {"cores": 2, "seconds": {"vae": 1000.0, "mdnrnn": 500.0}, "note": "from the log"})
    controller = Controller(ControllerConfig())
    save_model(controller, wm, "controller", "carracing", extra={"generation": 1})
    with pytest.raises(WMError, match="generation 1, the log has 2"):
        recipes.carracing_v2_ship(run, out, command="ship", episodes=1, workers=1)
    save_model(controller, wm, "controller", "carracing", extra={"generation": 2})
    card = recipes.carracing_v2_ship(run, out, command="ship", episodes=1, workers=1)
    for name in ("vae", "mdnrnn", "controller"):
        assert recipes.is_float16(out / f"{name}.safetensors"), name
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert [json.loads(x)["generation"] for x in (out / "cmaes_log.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((out / "model_card.json").read_text()) == json.loads(json.dumps(card))
    assert card["training_seconds"] == {"vae": 1000.0, "mdnrnn": 500.0, "controller": 220.0}
    assert card["cpu_hours"] == round((1600 * 2 + 120 * 16) / 3600, 1)
    assert card["learning_curve"]["mean_on_unseen_tracks"] == [{"generation": 2, "mean": 12.5, "std": 3.0}]
    assert card["measures"]["v"]["mse_agent_held_out"] == 0.0011
    assert card["data"]["policies"] == {"agent": 600, "brownian": 400} and card["actual_training"]["vae"].startswith(
        "1 epoch of batch 100 on 1000 episodes")
    assert ("pop 16 x 4 rollouts, 32 x 4 after generation 1 with every coordinate's std at least 0.05, 1,000-step "
            "episodes, 2 generations (220 s of generations, 2 or 16 worker") in card["actual_training"]["controller"]
    assert card["score"]["episodes"] == 1 and np.isfinite(card["score"]["mean"])
    assert len(card["score"]["returns"]) == len(card["score"]["steps"]) == 1  # each track's, for the chapter
    assert abs(card["score"]["returns"][0] - card["score"]["mean"]) < 0.05 and 1 <= card["score"]["steps"][0] <= 1000
    assert card["status"].startswith(f"{card['score']['mean']:.0f} +- ") and "below 900" in card["status"]


def test_carracing_v2_ablation_plays_all_three_as_sep_cmaes_and_carries_its_progress(tmp_path, monkeypatch):
    """scripts/carracing_v2.py --stages ablation: z, z_hidden and zh each from scratch as sep-CMA-ES (which
    resumes on any machine), each scored controller's progress goes to the ablation folder, and a fresh run
    starts from it; the table is shipped there with its command. (The ablation itself, CMA-ES in the real
    game, is a stand-in here.)"""
    import json

    import numpy as np

    from wmlib.checkpoint import save_npz, write_json
    run, ship_dir = tmp_path / "run", tmp_path / "v2-ablation"
    (run / "wm").mkdir(parents=True)
    played = []

    def fake_ablation(weights, cfg, out, *, episodes, kinds, log, progress, after_kind):
        assert cfg.cmaes.generations == 3 and cfg.cmaes.diagonal_from == 0 and cfg.cmaes.resizes == ()
        assert weights == out.parent / "wm"
        for kind in kinds:
            if (out / kind / "scores.json").exists():
                continue
            played.append(kind)
            (out / kind / "cmaes").mkdir(parents=True, exist_ok=True)
            save_npz(out / kind / "cmaes" / "state.npz", fitness=np.zeros((3, 2)))
            save_npz(out / kind / "cmaes" / "switch.npz", generation=np.int64(0))
            write_json(out / kind / "scores.json", {"kind": kind, "mean": 1.0})
            after_kind(kind)
            if kind == "z":
                raise KeyboardInterrupt  # the sitting ends after z
        res = {"rows": [], "markdown": "| table |", "weights": str(weights), "episodes": episodes}
        write_json(out / "ablation.json", res)
        return res

    monkeypatch.setattr(recipes, "ablation", fake_ablation)
    cfg = recipes.carracing_v2()
    with pytest.raises(KeyboardInterrupt):
        recipes.carracing_v2_ablation(cfg, run, ship_dir, generations=3, command="cmd")
    assert (ship_dir / "progress-3" / "z" / "scores.json").exists()
    assert (ship_dir / "progress-3" / "z" / "cmaes" / "switch.npz").exists()
    fresh = tmp_path / "fresh"  # another machine: the ablation's work does not come with it, its progress does
    (fresh / "wm").mkdir(parents=True)
    recipes.carracing_v2_ablation(cfg, fresh, ship_dir, generations=3, command="cmd")
    assert played == ["z", "z_hidden", "zh"]  # z was not played again
    assert (fresh / "ablation-3" / "z" / "cmaes" / "switch.npz").exists()
    shipped = json.loads((ship_dir / "ablation.json").read_text())
    assert shipped["command"] == "cmd" and "evaluation seed 1" in shipped["weights"]
    assert {p.name for p in (ship_dir / "progress-3").iterdir()} == {"z", "z_hidden", "zh"}
