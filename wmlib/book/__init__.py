"""What the book's chapters use besides wmlib's public API: `from wmlib.book import ...`.

- set-up and sizes: setup (the profile and device), the sizes of each chapter and of the run it trains;
- glue: glue and quote (values the text quotes);
- pictures: show_frames, video, png, mosaic, side_by_side; image_slider and figure_png (pictures made in
  advance behind a slider that works without a kernel);
- widgets that run V and M in the reader's browser, without a kernel: latent_explorer, dream_widget;
- the chapters' shared helpers: run_stage, encode and decode with V, what the CarRacing chapters 3 and 5
  share (carracing.py), and what the Doom chapters 8 and 9 share (doom.py);
- the stages and studies the chapters drive (wmlib.run.pipeline, wmlib.studies), re-exported here;
- the library's details that chapters open up to look inside (loss pieces, seeds, series, worker pools):
  not part of the data path's API, but named here so that no chapter reaches into a module.

Each helper's docstring names the chapter that introduces it.
"""
from ..checkpoint import load_torch_state, read_json
from ..cmaes import generation_returns, make_es, variance_parts
from ..collect import play_episode
from ..envs import MAX_STEPS, close_games
from ..parallel import make_executor, single_torch_thread
from ..policies import make_policy
from ..run.pipeline import (open_run, stage_collect, stage_controller, stage_iterate, stage_mdnrnn, stage_series,
                            stage_vae, timed)
from ..run.profiles import CHAPTER_SIZES, PROFILES, IterateConfig, chapter_sizes, param_counts
from ..series import load_packed
from ..studies.ablation import KINDS as ABLATION_KINDS, LABELS as ABLATION_LABELS, PAPER as ABLATION_PAPER
from ..studies.ablation import ablation, train_real
from ..studies.dreamcheck import POLICIES as DREAM_CHECK_POLICIES
from ..studies.dreamcheck import (BatchPolicy, dream_check, dream_check_markdown, dream_survival,
                                  held_shares)
from ..studies.tausweep import sweep_markdown, tau_dir
from ..train_mdnrnn import mdnrnn_loss, sample_windows
from ..vae import VAEOutput, kl_divergence
from .carracing import HELDOUT_SEED, carracing_heldout, road_bend, road_mask, search_progress
from .doom import (c_policy, controller_in_dream, dream_along, fireball_mask, fireball_pixels, live_sweep,
                   open_weights, play_dream, play_real, round_weights, sweep_dir)
from .browser import dream_widget, latent_explorer
from .figures import figure_png, image_slider, mosaic, png, side_by_side
from .notebook import (book_run_config, decode, encode, glue, on_colab, quote, repo_root, run_stage, setup,
                       shipped_weights, shown_path, show_frames, video, video_bytes)

__all__ = [
    # set-up and sizes
    "setup", "on_colab", "PROFILES", "CHAPTER_SIZES", "chapter_sizes", "book_run_config", "repo_root",
    "shipped_weights", "shown_path",
    # glue
    "glue", "quote",
    # pictures
    "show_frames", "video", "video_bytes", "png", "mosaic", "side_by_side",
    # widgets that run V and M in the reader's browser
    "latent_explorer", "dream_widget",
    # pictures made in advance behind a slider (plain JavaScript, no kernel)
    "image_slider", "figure_png",
    # the chapters' shared helpers
    "run_stage", "encode", "decode",
    "carracing_heldout", "road_mask", "road_bend", "HELDOUT_SEED", "search_progress",
    "open_weights", "live_sweep", "sweep_dir", "fireball_mask", "fireball_pixels", "play_real", "play_dream",
    "c_policy", "round_weights", "controller_in_dream", "dream_along",
    # stages and studies the chapters drive
    "open_run", "timed", "stage_collect", "stage_vae", "stage_series", "stage_mdnrnn", "stage_controller",
    "stage_iterate", "IterateConfig", "param_counts",
    "ablation", "train_real", "ABLATION_KINDS", "ABLATION_LABELS", "ABLATION_PAPER",
    "dream_check", "dream_check_markdown", "dream_survival", "DREAM_CHECK_POLICIES", "BatchPolicy", "held_shares",
    "sweep_markdown", "tau_dir",
    # the library's details the chapters look inside
    "kl_divergence", "VAEOutput", "mdnrnn_loss", "sample_windows", "load_packed", "load_torch_state", "read_json",
    "make_es", "variance_parts", "generation_returns", "play_episode", "make_policy", "make_executor",
    "single_torch_thread", "MAX_STEPS", "close_games",
]
