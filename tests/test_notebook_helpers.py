"""wmlib.notebook helpers the chapters use: glue works with and without myst-nb."""
import sys

import numpy as np
import pytest

from wmlib.notebook import book_run_config, glue


def test_glue_without_myst_nb_returns_plain_value(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb now raises ImportError (as on Colab)
    value = glue("x", np.float32(1.5), display=False)
    assert value == 1.5 and type(value) is float
    assert type(glue("n", np.int64(3), display=False)) is int
    assert glue("s", "text", display=False) == "text"


def test_glue_hands_plain_numbers_to_myst_nb(monkeypatch):
    seen = {}

    class FakeMystNb:
        @staticmethod
        def glue(name, value, display=True):
            seen[name] = (value, display)

    monkeypatch.setitem(sys.modules, "myst_nb", FakeMystNb)
    glue("loss", np.float64(0.25), display=False)
    assert seen["loss"] == (0.25, False) and type(seen["loss"][0]) is float


def test_book_run_config_rejects_unknown_profile_and_env():
    with pytest.raises(ValueError, match="profile"):
        book_run_config("carracing", "huge")
    with pytest.raises(ValueError, match="BOOK_SIZES"):
        book_run_config("doom", "default")


def test_book_run_dir_changes_with_the_sizes(monkeypatch, tmp_path):
    import wmlib.notebook as nb
    monkeypatch.chdir(tmp_path)
    cfg, run = book_run_config("carracing", "smoke")
    assert run.parent == tmp_path / "runs" and run.name.startswith("book-carracing-smoke-")
    assert book_run_config("carracing", "smoke")[1] == run  # chapters 3, 5 and 7 share it
    sizes = {**nb.BOOK_SIZES["carracing"]["smoke"], ("collect", "episodes"): cfg.collect.episodes + 1}
    monkeypatch.setitem(nb.BOOK_SIZES["carracing"], "smoke", sizes)
    assert book_run_config("carracing", "smoke")[1] != run
