"""benchmarks/ scripts that read saved results rather than time anything, checked on data made here."""
import json
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
