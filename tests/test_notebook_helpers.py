"""wmlib.book helpers the chapters use: glue works with and without myst-nb."""
import sys

import numpy as np
import pytest

from wmlib.book.notebook import book_run_config, glue


def test_glue_without_myst_nb_does_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb now raises ImportError (as on Colab)
    assert glue("x", np.float32(1.5), display=False) is None


def test_glue_and_quote_return_nothing_a_cell_would_print(glued):
    from wmlib.book.notebook import quote

    assert glue("x", 1.5) is None and quote("y", np.float32(2.0)) is None
    assert glued == {"x": (1.5, True), "y": (2.0, False)}


@pytest.fixture
def glued(monkeypatch):
    """A stand-in for myst-nb: what was glued, name -> (value, display)."""
    seen = {}

    class FakeMystNb:
        @staticmethod
        def glue(name, value, display=True):
            seen[name] = (value, display)

    monkeypatch.setitem(sys.modules, "myst_nb", FakeMystNb)
    return seen


def test_glue_hands_plain_numbers_to_myst_nb(glued):
    seen = glued
    glue("loss", np.float64(0.25), display=False)
    assert seen["loss"] == (0.25, False) and type(seen["loss"][0]) is float


def test_book_run_config_rejects_unknown_profile_and_env():
    from wmlib.errors import WMError

    with pytest.raises(WMError, match="profile"):
        book_run_config("carracing", "huge")
    with pytest.raises(WMError, match="environment"):
        book_run_config("pong", "default")


def test_book_run_config_is_the_cli_config():
    """One sizing system: a chapter trains what `python -m wmlib run --profile PROFILE` trains."""
    from wmlib.run.profiles import PROFILES, get_config

    for env in ("carracing", "doom"):
        for profile in PROFILES:
            assert book_run_config(env, profile)[0] == get_config(env, profile)


def test_book_run_dir_changes_with_the_sizes(monkeypatch, tmp_path):
    import wmlib.book.notebook as nb
    monkeypatch.chdir(tmp_path)
    cfg, run = book_run_config("carracing", "smoke")
    assert run.parent == tmp_path / "runs" and run.name.startswith("book-carracing-smoke-")
    assert book_run_config("carracing", "smoke")[1] == run  # chapters 3, 5 and 7 share it
    assert book_run_config("carracing", "smoke", name="beyond")[1].name.startswith("book-beyond-smoke-")
    bigger = nb.get_config

    def more_episodes(env, profile, seed=0):
        cfg = bigger(env, profile, seed)
        cfg.collect.episodes += 1
        return cfg

    monkeypatch.setattr(nb, "get_config", more_episodes)
    assert book_run_config("carracing", "smoke")[1] != run


def test_quote_glues_plain_numbers_without_display(glued, monkeypatch):
    import torch

    from wmlib.book.notebook import quote

    seen = glued
    quote("a", np.float32(0.5))
    quote("n", np.int64(7))
    quote("t", torch.tensor(2.5))  # a 0-d tensor
    quote("m", torch.ones(3).mean())
    quote("s", "still falling")
    quote("b", True)
    assert type(seen["a"][0]) is float and seen["a"] == (0.5, False)
    assert type(seen["n"][0]) is int and seen["n"] == (7, False)
    assert type(seen["t"][0]) is float and seen["t"] == (2.5, False)
    assert type(seen["m"][0]) is float
    assert seen["s"] == ("still falling", False) and seen["b"] == (True, False)
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # Colab: no myst-nb, quote is quiet
    assert quote("x", torch.tensor(3)) is None


def test_fireball_pixels_counts_bright_yellow_only():
    from wmlib.book.doom import fireball_mask, fireball_pixels

    frames = np.full((2, 8, 8, 3), 30, np.uint8)  # two frames of a dark room
    frames[0, 1, 1:4] = (255, 220, 60)  # a fireball: three bright yellow pixels
    frames[0, 5, 5] = (220, 140, 40)    # its orange edge counts too
    frames[0, 6, 6] = (230, 40, 30)     # a red monster: too little green, must not count
    frames[0, 7, 7] = (140, 200, 40)    # green-yellow: not red enough
    frames[1, 0, 0] = (255, 255, 255)   # white: not yellow (blue as high as red)
    assert fireball_pixels(frames).tolist() == [4, 0]
    mask = fireball_mask(frames)
    assert mask[0, 1, 2] and not mask[0, 6, 6] and mask.sum() == 4
    assert fireball_pixels(frames[0]) == 4  # one frame (H, W, 3) -> one count


def test_sweep_sizes_rejects_an_unknown_profile_and_returns_a_copy():
    from wmlib.run.profiles import CHAPTER_SIZES, PROFILES, chapter_sizes
    from wmlib.errors import WMError

    with pytest.raises(WMError, match=r"'huge'.*smoke, default, gpu, paper"):
        chapter_sizes("doom_sweep", "huge")
    with pytest.raises(WMError, match=r"'nope'.*doom_sweep"):
        chapter_sizes("nope", "smoke")
    s = chapter_sizes("doom_sweep", "smoke")
    assert s == CHAPTER_SIZES["doom_sweep"]["smoke"]
    s["taus"].append(0.5)  # a chapter that changes its copy does not change the other chapter's
    assert chapter_sizes("doom_sweep", "smoke")["taus"] == [0.1, 1.15]
    assert all(set(sizes) == set(PROFILES) for sizes in CHAPTER_SIZES.values())  # every chapter, every level


def test_live_dir_depends_only_on_the_weight_files(tmp_path):
    from wmlib.book.doom import live_dir

    def weights(folder, mdnrnn=b"M", vae=b"V"):
        folder.mkdir()
        (folder / "mdnrnn.safetensors").write_bytes(mdnrnn)
        (folder / "vae.safetensors").write_bytes(vae)
        (folder / "controller.safetensors").write_bytes(folder.name.encode())  # C does not count
        return folder

    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    live = live_dir(tmp_path, a, "smoke")
    assert live.parent == tmp_path / "runs" / "book-doom-dream" and live.name.startswith("smoke-")
    assert live_dir(tmp_path, b, "smoke") == live  # same V and M files elsewhere: the same results
    assert live_dir(tmp_path, a, "default") != live
    assert live_dir(tmp_path, weights(tmp_path / "c", vae=b"V2"), "smoke") != live


def test_open_weights_finds_the_root_and_says_where_the_weights_come_from(tmp_path, monkeypatch, capsys):
    from wmlib.book.doom import live_dir, open_weights
    from wmlib.errors import WMError

    weights = tmp_path / "mine"
    weights.mkdir()
    for name in ("mdnrnn.safetensors", "vae.safetensors", "controller.safetensors", "model_card.json",
                 "tau_sweep.json"):
        (weights / name).write_bytes(name.encode())
    (tmp_path / "repo" / "wmlib").mkdir(parents=True)
    (tmp_path / "repo" / "book").mkdir()
    monkeypatch.chdir(tmp_path / "repo" / "book")  # a chapter runs in book/: the root is its parent
    monkeypatch.setenv("WMLIB_DOOM_WEIGHTS", str(weights))
    assert open_weights("smoke") == (weights, live_dir(tmp_path / "repo", weights, "smoke"))
    out = capsys.readouterr().out
    assert f"weights: {weights}\n" in out
    assert "shipped with the weights: model card, tau sweep; not shipped, so computed here when needed: dream check, " in out
    # Without weights there is no stand-in: an error that names the fix
    monkeypatch.setenv("WMLIB_DOOM_WEIGHTS", str(tmp_path / "repo"))
    with pytest.raises(WMError, match="WMLIB_DOOM_WEIGHTS"):
        open_weights("smoke")


def test_run_stage_log_has_no_clock_times_or_machine_paths(tmp_path, monkeypatch, capsys):
    """A chapter's output shows a stage's log without what changes with the machine and the day."""
    from wmlib.book.notebook import repo_root, run_stage

    monkeypatch.chdir(tmp_path)

    def stage(cfg, run_dir, progress=True):
        print(f"14:47:58 [collect] 3 episodes into {repo_root() / 'runs' / 'x'}", file=sys.stderr)
        print("plain line 12:00:00 stays")
        return 7

    assert run_stage("collect", stage, None, tmp_path / "run") == 7
    out = capsys.readouterr().out
    assert out.splitlines() == ["[collect] 3 episodes into runs/x", "plain line 12:00:00 stays"]


def test_search_progress_reads_the_committed_search(tmp_path):
    """search_progress (chapter 7): one record per generation, the last of a repeated line (a resumed search),
    the optional measurements as None when missing; a folder without a search is refused, naming the fix."""
    import json

    from wmlib.book import search_progress
    from wmlib.errors import WMError
    with pytest.raises(WMError, match="--save-progress"):
        search_progress(tmp_path)
    (tmp_path / "cmaes").mkdir()
    lines = [{"generation": 1, "mean_fitness": -60.0}, {"generation": 2, "mean_fitness": -50.0},
             {"generation": 2, "mean_fitness": -40.0, "eval_mean": 12.0, "eval_std": 3.0}]
    (tmp_path / "cmaes" / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "cmaes" / "settings.json").write_text('{"cmaes": {"popsize": 16}}')
    (tmp_path / "m_eval.json").write_text('{"nll_held_out": 0.95}')
    found = search_progress(tmp_path)
    assert [g["mean_fitness"] for g in found["generations"]] == [-60.0, -40.0]
    assert found["settings"]["cmaes"]["popsize"] == 16 and found["m"] == {"nll_held_out": 0.95}
    assert found["v"] is None and found["compute"] is None and found["summary"] is None and found["returns"] is None
    from wmlib.checkpoint import save_npz
    returns = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    save_npz(tmp_path / "cmaes" / "state.npz", fitness=returns.mean(2), returns=returns, checksum=np.zeros(2))
    assert np.array_equal(search_progress(tmp_path)["returns"], returns)


def test_the_committed_search_has_what_chapter_7_reads():
    """pretrained/carracing/v2-progress, as --save-progress commits it: chapter 7 quotes its data, V's and M's
    measurements, the compute before C and the unseen-track scores."""
    from wmlib.book import search_progress
    from .helpers import ROOT
    found = search_progress(ROOT / "pretrained" / "carracing" / "v2-progress")
    assert found["summary"]["data"]["policies"] and found["v"]["held_out_over_training"] > 0
    assert found["m"]["nll_held_out"] > 0 and found["compute"]["seconds"] and found["compute"]["cores"] >= 1
    assert any("eval_mean" in g for g in found["generations"])
    assert found["returns"].shape[0] == len(found["generations"])  # the ranking chapter 7 computes
    assert [g["generation"] for g in found["generations"]] == list(range(1, len(found["generations"]) + 1))
