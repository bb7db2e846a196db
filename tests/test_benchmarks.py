"""benchmarks/ scripts that read saved results rather than time anything, checked on data made here."""
import json
import os
import subprocess
import sys

import numpy as np

from wmlib.checkpoint import save_npz

from .helpers import ROOT


def test_ranking_of_a_search_recovers_the_candidates_spread_and_the_noise(tmp_path):
    """carracing_ranking.py --search: on a made-up search whose candidates' true means have std 100 and whose
    every track adds a shared difficulty and a per-candidate noise of std 100, it finds both spreads, and
    predicts the correlation of two independent sets of r tracks as var / (var + noise / r)."""
    rng = np.random.default_rng(0)
    gens, pop, tracks = 40, 16, 4
    true = rng.normal(500, 100, (gens, pop, 1))
    track = rng.normal(0, 300, (gens, 1, tracks))  # shared by all candidates: must not count as noise
    returns = true + track + rng.normal(0, 100, (gens, pop, tracks))
    state = tmp_path / "cmaes"
    state.mkdir()
    save_npz(state / "state.npz", fitness=returns.mean(2), returns=returns, checksum=np.zeros(gens))
    (state / "log.jsonl").write_text("".join(json.dumps({"generation": g + 1, "sigma": 0.1}) + "\n"
                                             for g in range(gens)))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "carracing_ranking.py"), "--search", str(state),
                          "--window", "40"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    row = json.loads(out.strip().splitlines()[-1])["rows"][0]
    assert row["generations"] == [1, 40]
    assert 85 < row["candidates_std"] < 115 and 90 < row["noise_std"] < 110
    assert abs(row["predicted"]["4"] - 0.8) < 0.06 and abs(row["predicted"]["1"] - 0.5) < 0.08
    assert abs(row["measured_halves"] - row["predicted"]["2"]) < 0.12  # 2 vs 2 tracks, as predicted


def test_ranking_reads_a_resized_search_padded_with_nan(tmp_path):
    """A search whose population was resized (wmlib.cmaes resizes) pads the smaller generations with NaN: the
    benchmark measures each generation on its own candidates and tracks, and reports the std really sampled."""
    rng = np.random.default_rng(1)
    returns = np.full((40, 32, 4), np.nan)
    for g in range(40):
        pop = 16 if g < 20 else 32
        returns[g, :pop] = rng.normal(500, 100, (pop, 1)) + rng.normal(0, 100, (pop, 4))
    state = tmp_path / "cmaes"
    state.mkdir()
    fitness = np.where(np.isnan(returns[:, :, 0]), np.nan, returns.sum(2) / 4)
    save_npz(state / "state.npz", fitness=fitness, returns=returns, checksum=np.zeros(40))
    (state / "log.jsonl").write_text("".join(json.dumps({"generation": g + 1, "sigma": 0.02, "median_std": 0.04})
                                             + "\n" for g in range(40)))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "carracing_ranking.py"), "--search", str(state),
                          "--window", "20"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "16 candidates x 4 tracks, 32 candidates x 4 tracks" in out
    rows = json.loads(out.strip().splitlines()[-1])["rows"]
    for row in rows:  # NaN would have made every number NaN
        assert row["sigma"] == 0.04 and 80 < row["candidates_std"] < 120 and 85 < row["noise_std"] < 115


def test_driving_splits_the_points_short_of_900_by_how_each_episode_ended(tmp_path):
    """carracing_driving.py --from-eval: of an evaluate --json output, the points short of 900 are split
    between the episodes that ended before the 1,000-step cap and those that ran to it, summing to the whole;
    a track above 900 makes up for none of another's shortfall."""
    ev = {"env": "carracing", "weights": "w", "seed": 0, "returns": [910.0, 850.0, 600.0, 880.0],
          "steps": [900, 1000, 1000, 950]}
    (tmp_path / "eval.json").write_text("progress line\n" + json.dumps(ev))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "carracing_driving.py"), "--from-eval",
                          str(tmp_path / "eval.json")], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["mean"] == 810.0 and res["short_of_900"] == (0 + 50 + 300 + 20) / 4
    early, capped = res["kinds"]["ended_before_cap"], res["kinds"]["ran_to_the_cap"]
    assert early == {"episodes": 2, "mean_return": 895.0, "points_short_per_track": 5.0}
    assert capped == {"episodes": 2, "mean_return": 725.0, "points_short_per_track": 87.5}


def test_driving_plays_tracks_and_records_how_the_car_drove(tmp_path):
    """carracing_driving.py on an untrained agent made here: each track's row is filled from the game (tiles
    reached, steps, the actions sent), the kinds cover every track, and --mean-z plays the same tracks again."""
    import torch

    from wmlib.checkpoint import save_model
    from wmlib.controller import Controller, ControllerConfig
    from wmlib.mdnrnn import MDNRNN, MDNRNNConfig
    from wmlib.vae import ConvVAE, VAEConfig
    torch.manual_seed(0)
    for name, model in (("vae", ConvVAE(VAEConfig())), ("mdnrnn", MDNRNN(MDNRNNConfig())),
                        ("controller", Controller(ControllerConfig()))):
        save_model(model, tmp_path, name, "carracing")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "carracing_driving.py"), "--weights",
                          str(tmp_path), "--episodes", "1", "--workers", "1", "--mean-z"], capture_output=True,
                         text=True, check=True, cwd=ROOT, env={**os.environ, "SDL_VIDEODRIVER": "dummy"}).stdout
    res = json.loads(out.strip().splitlines()[-1])
    (row,) = res["tracks"]
    assert 1 <= row["steps"] <= 1000 and 0 <= row["tiles"] <= 1 and row["track_tiles"] > 100
    assert 0 <= row["gas"] <= 1 and 0 <= row["abs_steer"] <= 1 and 0 <= row["off_road_steps"] <= row["steps"]
    assert not row["finished"]  # an untrained C does not drive a lap
    assert sum(k["episodes"] for k in res["kinds"].values()) == 1
    assert sum(k["points_short_per_track"] for k in res["kinds"].values()) == res["short_of_900"]
    assert np.isfinite(res["mean_z"]["mean"]) and res["mean_z"]["se"] is None
