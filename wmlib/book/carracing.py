"""What chapters 3 (V) and 5 (M) of the book share about CarRacing: the held-out episodes both test on, and the
road as a measure (how much of a frame is road, and whether the road ahead bends); and, for chapter 7, the
search for the next CarRacing agent in progress (search_progress).

Both chapters show the shipped models (pretrained/carracing) on episodes none of them trained on: the shipped
agent driving (with a little noise on its actions), so that road and turns are in view, and the run's own
random data policy. The episodes are recorded once into the run directory; the chapter opened second finds
them there. Their sizes are chapter 3's (CHAPTER_SIZES["v_carracing"]), so both chapters test on the same
frames.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from ..checkpoint import file_digest, read_json
from ..collect import collect
from ..errors import WMError
from ..run.profiles import chapter_sizes
from .notebook import repo_root

HELDOUT_SEED = 10_000  # held-out episodes come from another seed stream than a run's own


def carracing_heldout(run_dir: Path, cfg, profile: str, weights: Path) -> dict:
    """The held-out CarRacing episodes of chapters 3 and 5, recorded into run_dir once: {"agent": files,
    "random": files}.

    "agent": chapter 3's `agent_heldout` episodes of at most `agent_steps` steps, played by the agent in
    `weights` with Gaussian noise `agent_noise` on its actions; their folder's name holds a digest of the
    weights and these settings, so other weights (or sizes) record new episodes instead of reusing these.
    "random": `heldout` episodes of the run's own data policy (cfg.collect), as long as its episodes.

    Introduced in chapter 3.
    """
    run_dir, weights = Path(run_dir), Path(weights)
    sizes = chapter_sizes("v_carracing", profile)
    n, steps, noise = sizes["agent_heldout"], sizes["agent_steps"], sizes["agent_noise"]
    key = "|".join([file_digest(weights / f"{m}.safetensors") for m in ("vae", "mdnrnn", "controller")]
                   + [str(steps), repr(float(noise))])
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    workers = min(2, n)
    agent = collect("carracing", run_dir / f"heldout-agent-{digest}", n, seed=cfg.seed + HELDOUT_SEED,
                    policy="agent", weights=str(weights), noise=noise, max_steps=steps, workers=workers,
                    progress=False)
    random = collect("carracing", run_dir / "heldout", sizes["heldout"], seed=cfg.seed + HELDOUT_SEED,
                     policy=cfg.collect.policy, max_steps=cfg.collect.max_steps, workers=min(2, sizes["heldout"]),
                     progress=False)
    return {"agent": agent, "random": random}


def road_mask(frames) -> np.ndarray:
    """The road's pixels in uint8 frames (N, 64, 64, 3) (or one frame): grey, its channels within 12 of each
    other, of mean brightness 80-140 (the track's tiles; grass is green, the kerbs red and white). Works on
    V's drawings as well as on real frames. Returns bool (N, 64, 64).

    Introduced in chapter 3.
    """
    f = np.asarray(frames).astype(np.int16)
    mean = f.mean(axis=-1)
    return (np.ptp(f, axis=-1) < 12) & (mean > 80) & (mean < 140)


FAR_ROWS, NEAR_ROWS = slice(0, 16), slice(40, 56)  # the road ahead; the road around the car (rows 44-52)


def road_bend(mask) -> np.ndarray:
    """How far the road ahead bends, in pixels, from road masks (N, 64, 64): the road's mean column in the top
    16 rows (far ahead) minus its mean column in rows 40-56 (around the car). Negative: the road ahead turns
    left. NaN where either band holds 5 road pixels or fewer (no road to follow there).

    Introduced in chapter 3.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        mask = mask[None]
    cols = np.arange(mask.shape[-1])

    def centre(rows):
        band = mask[:, rows]
        count = band.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 5, (band * cols).sum(axis=(1, 2)) / np.maximum(count, 1), np.nan)

    return centre(FAR_ROWS) - centre(NEAR_ROWS)


SEARCH_PROGRESS = Path("pretrained") / "carracing" / "v2-progress"


def search_progress(folder: Path | None = None) -> dict:
    """The search for the next CarRacing agent, as committed between sittings (scripts/carracing_v2.py
    --save-progress; by default pretrained/carracing/v2-progress, looked for like the shipped weights):
    {"generations": one record per CMA-ES generation (mean, best and worst fitness, sigma, seconds, and every
    few generations the distribution mean's score on unseen tracks, eval_mean and eval_std), "settings": the
    search's CMA-ES and C settings, "summary": progress.json, "v", "m": V's and M's measurements, "compute":
    the stages before C (compute.json), "returns": every candidate's return on each of its generation's tracks
    (gens, pop, rollouts), NaN-padded where the population was resized, None without the state, "folder"}.

    Introduced in chapter 7.
    """
    places = [Path(folder)] if folder is not None else [repo_root() / SEARCH_PROGRESS,
                                                         Path(__file__).resolve().parents[2] / SEARCH_PROGRESS]
    for place in dict.fromkeys(places):
        log = place / "cmaes" / "log.jsonl"
        if log.exists():
            break
    else:
        raise WMError(f"no search in progress at {' or '.join(str(p) for p in dict.fromkeys(places))} (no "
                      "cmaes/log.jsonl): pass the folder that `scripts/carracing_v2.py --save-progress` wrote")
    records = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        records[record["generation"]] = record  # a resumed search may repeat a line; the last one counts
    optional = {name: place / f"{name}.json" for name in ("v_eval", "m_eval", "compute")}
    optional = {name: read_json(path) if path.exists() else None for name, path in optional.items()}
    state, returns = place / "cmaes" / "state.npz", None
    if state.exists():
        with np.load(state, allow_pickle=False) as f:
            returns = f["returns"]
    return {"generations": [records[g] for g in sorted(records)], "returns": returns,
            "settings": read_json(place / "cmaes" / "settings.json"),
            "summary": read_json(place / "progress.json") if (place / "progress.json").exists() else None,
            "v": optional["v_eval"], "m": optional["m_eval"], "compute": optional["compute"], "folder": place}
