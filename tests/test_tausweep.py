"""The temperature sweep: one controller per tau, its table, and how a sweep resumes or goes on."""
import numpy as np
import pytest

from wmlib.checkpoint import load_model, read_json
from wmlib.controller import Controller, ControllerConfig
from wmlib.book.doom import sweep_config
from wmlib.errors import WMError
from wmlib.studies.tausweep import ship_sweep, sweep_markdown, tau_sweep

from .test_dream import make_weights

SIZES = dict(popsize=4, rollouts=2, generations=1)


def sweep(weights, out, generations, taus=(1.0, 0.5)):
    cfg = sweep_config({**SIZES, "generations": generations}, 1.15, max_steps=30)
    return tau_sweep(weights, list(taus), cfg, out=out, episodes=1, seed=0, workers=1, log=lambda *_: None,
                     progress=False)


def test_sweep_resumes_and_goes_on_with_more_generations(tmp_path):
    weights = make_weights(tmp_path / "weights", done_bias=-2.0)
    out = tmp_path / "sweep"
    first = sweep(weights, out, generations=1)
    assert [r["tau"] for r in first["rows"]] == [1.0, 0.5]
    assert all(r["generations"] == 1 and r["episodes"] == 1 for r in first["rows"])
    assert first["cmaes"] == {"popsize": 4, "rollouts": 2, "generations": 1, "sigma0": 0.1}
    assert first["dream"] == {"max_steps": 30, "done_mode": "threshold"}
    # The dream is capped at 30 steps and its done head rarely fires: virtual scores lie in (0, 30].
    assert all(0 < r["virtual_mean"] <= 30 for r in first["rows"])
    assert read_json(out / "tau_sweep.json")["rows"] == first["rows"]

    # A finished tau is read back, not trained again.
    state = out / "tau_1" / "cmaes" / "state.npz"
    mtime = state.stat().st_mtime_ns
    assert sweep(weights, out, generations=1)["rows"] == first["rows"]
    assert state.stat().st_mtime_ns == mtime

    # More generations continue a tau's CMA-ES from its saved state (one tau here: each costs a real episode).
    more = sweep(weights, out, generations=2, taus=(1.0,))
    assert [(r["tau"], r["generations"]) for r in more["rows"]] == [(1.0, 2)]
    with np.load(state) as f:
        assert f["fitness"].shape == (2, SIZES["popsize"])
    # Fewer generations than a tau already has: its row is read back as it is, nothing is run.
    mtime = state.stat().st_mtime_ns
    assert sweep(weights, out, generations=1, taus=(1.0,))["rows"] == more["rows"]
    assert state.stat().st_mtime_ns == mtime

    # Shipping copies the table and each tau's C (not V and M again) into the weights folder.
    ship_sweep(out, weights)
    assert read_json(weights / "tau_sweep.json")["rows"] == more["rows"]
    assert (weights / "tau_sweep.md").read_text().startswith(more["markdown"] + "\n\n")
    assert "4 candidates x 2 rollouts, 2 generations" in (weights / "tau_sweep.md").read_text()
    for tau in ("1",):
        shipped = weights / "tau_controllers" / f"tau_{tau}"
        assert sorted(p.name for p in shipped.rglob("*") if p.is_file()) == \
            ["controller.json", "controller.safetensors", "log.jsonl", "scores.json"]
        c = load_model(Controller, ControllerConfig, shipped, "controller", "doom")[0]
        trained = load_model(Controller, ControllerConfig, out / f"tau_{tau}", "controller", "doom")[0]
        assert np.array_equal(c.get_flat(), trained.get_flat())


def test_shipping_an_unfinished_sweep_is_refused(tmp_path):
    with pytest.raises(WMError, match="no finished tau sweep"):
        ship_sweep(tmp_path / "nothing", tmp_path / "weights")


def test_markdown_lists_taus_in_order_beside_the_paper():
    rows = [{"tau": t, "virtual_mean": 10.0 * t, "virtual_std": 1.0, "actual_mean": 5.0, "actual_std": 2.0}
            for t in (1.15, 0.1, 0.7)]
    lines = sweep_markdown(rows).splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["0.1", "0.7", "1.15"]
    assert "2086 ± 140" in lines[2] and "1092 ± 556" in lines[4]  # the paper's row beside each known tau
    assert lines[3].rstrip().endswith("| - | - |")  # a tau the paper did not run
