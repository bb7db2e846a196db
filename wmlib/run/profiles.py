"""The sizes of everything wmlib runs, per profile: one level means the same for the CLI and the book.

Profiles:
- smoke:   every stage in seconds, for tests and CI (tiny data, a couple of CMA-ES generations);
- default: what a reader's 2-core CPU runs in minutes: `python -m wmlib run` and the book's chapters
           (small data, a few CMA-ES generations; the models are the paper's);
- gpu:     a reader's own run sized for a Colab-class GPU (V and M train on it); on a 2-core CPU the
           CarRacing run takes many hours (see benchmarks/README.md for measured rates);
- paper:   the paper's data sizes and hyperparameters (needs a GPU for V and M and many cores for C).

get_config(env, profile) is the whole run (collect, V, M, C, evaluation) of one profile, for the CLI and
for the chapters that train one. CHAPTER_SIZES holds what only the book sizes, per chapter and profile: the
toy problems of chapters 2, 4 and 6, how much each chapter looks at, the Doom chapters' tau sweep.
"""
import copy
import dataclasses
from dataclasses import dataclass, field

from ..cmaes import CMAESConfig
from ..collect import CollectConfig
from ..controller import ControllerConfig
from ..dream import DreamConfig
from ..envs import check_env_name
from ..errors import WMError, check_fields
from ..mdnrnn import MDNRNNConfig
from ..train_mdnrnn import MDNTrainConfig
from ..studies.tausweep import PAPER as PAPER_TAU_TABLE
from ..train_vae import VAETrainConfig
from ..vae import VAEConfig

PROFILES = ("smoke", "default", "gpu", "paper")


@dataclass
class IterateConfig:
    """The paper's iterative procedure: collect with the current C, retrain M on all data, retrain C. Chapter 10."""
    iterations: int = 0
    episodes: int = 200  # new real episodes per iteration, played by the agent
    noise: float = 0.3  # std of Gaussian noise on the agent's actions while collecting
    mdnrnn_steps: int = 200  # more M training steps per iteration (continuing, on old + new data)

    def __post_init__(self):
        check_fields(self, non_negative=("iterations", "episodes", "noise", "mdnrnn_steps"))


@dataclass
class RunConfig:
    """Every setting of one run (collect, V, M, C, dream, iterate, evaluation), as run.json records it. Chapter 7."""
    env: str
    profile: str
    seed: int = 0
    collect: CollectConfig = field(default_factory=CollectConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    vae_train: VAETrainConfig = field(default_factory=VAETrainConfig)
    mdnrnn: MDNRNNConfig = field(default_factory=MDNRNNConfig)
    mdnrnn_train: MDNTrainConfig = field(default_factory=MDNTrainConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    cmaes: CMAESConfig = field(default_factory=CMAESConfig)
    dream: DreamConfig = field(default_factory=DreamConfig)
    iterate: IterateConfig = field(default_factory=IterateConfig)
    eval_episodes: int = 100
    eval_max_steps: int | None = None  # None: the env's own cap

    def __post_init__(self):
        check_fields(self, positive=("eval_max_steps",), non_negative=("seed", "eval_episodes"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        nested = {"collect": CollectConfig, "vae": VAEConfig, "vae_train": VAETrainConfig,
                  "mdnrnn": MDNRNNConfig, "mdnrnn_train": MDNTrainConfig,
                  "controller": ControllerConfig, "cmaes": CMAESConfig, "dream": DreamConfig,
                  "iterate": IterateConfig}
        try:
            args = {k: (nested[k](**v) if k in nested else v) for k, v in d.items() if k in kinds}
            return cls(**args)
        except (TypeError, ValueError) as e:
            raise WMError(f"invalid run configuration ({e}); correct that value in run.json, or start over in a "
                          "new --run-dir") from e


def _carracing(profile: str) -> RunConfig:
    cfg = RunConfig(env="carracing", profile=profile,
                    vae=VAEConfig(z_size=32),
                    mdnrnn=MDNRNNConfig(z_size=32, action_size=3, hidden_size=256),
                    controller=ControllerConfig(kind="zh", z_size=32, rnn_hidden=256, action_size=3))
    if profile == "smoke":  # one process collects: a worker pool's start-up would dominate 240 steps
        cfg.collect = CollectConfig(episodes=4, max_steps=60, workers=1)
        cfg.vae_train = VAETrainConfig(epochs=1, batch_size=32, lr=1e-3, block_episodes=1)
        cfg.mdnrnn_train = MDNTrainConfig(steps=10, batch_size=4, seq_len=30)
        cfg.cmaes = CMAESConfig(popsize=4, rollouts=1, generations=2, max_steps=20, workers=2,
                                eval_every=0, eval_episodes=2)
        cfg.eval_episodes, cfg.eval_max_steps = 2, 20
    elif profile == "default":  # the book's chapters 3, 5 and 7 (all ten under 20 minutes on a 2-core CPU)
        cfg.collect = CollectConfig(episodes=32, max_steps=300, workers=2)
        cfg.vae_train = VAETrainConfig(epochs=2, batch_size=100, lr=1e-3, block_episodes=4)
        cfg.mdnrnn_train = MDNTrainConfig(steps=600, batch_size=16, seq_len=100)
        # C: 8 candidates x 1 track x 4 generations of 200 steps, under a minute of rollouts
        cfg.cmaes = CMAESConfig(popsize=8, rollouts=1, generations=4, max_steps=200, workers=2, eval_every=0,
                                eval_episodes=4)
        cfg.eval_episodes, cfg.eval_max_steps = 4, 200
    elif profile == "gpu":
        cfg.collect = CollectConfig(episodes=200, max_steps=1000)
        cfg.vae_train = VAETrainConfig(epochs=3, batch_size=100, lr=1e-3)
        cfg.mdnrnn_train = MDNTrainConfig(steps=1500, batch_size=32, seq_len=999)
        cfg.cmaes = CMAESConfig(popsize=16, rollouts=2, generations=20, eval_every=10, eval_episodes=16)
        cfg.eval_episodes = 20
    else:  # paper
        cfg.collect = CollectConfig(episodes=10_000, max_steps=1000)
        cfg.vae_train = VAETrainConfig(epochs=10, batch_size=100, lr=1e-4)
        cfg.mdnrnn_train = MDNTrainConfig(steps=4000, batch_size=100, seq_len=999)
        cfg.cmaes = CMAESConfig(popsize=64, rollouts=16, generations=1800, eval_every=25, eval_episodes=1024)
        cfg.eval_episodes = 100
    return cfg


def _doom(profile: str) -> RunConfig:
    cfg = RunConfig(env="doom", profile=profile,
                    vae=VAEConfig(z_size=64),
                    mdnrnn=MDNRNNConfig(z_size=64, action_size=1, hidden_size=512, restart_input=True,
                                        done_head=True),
                    controller=ControllerConfig(kind="zch", z_size=64, rnn_hidden=512, action_size=1))
    if profile == "smoke":
        cfg.collect = CollectConfig(episodes=4, max_steps=300, policy="held_random", min_length=100, workers=2)
        # a training state after every block of V and every step of M (checkpoint_every_s=0): the run that
        # tests/test_kill_anywhere.py kills then resumes V and M mid-way, not only from scratch
        cfg.vae_train = VAETrainConfig(epochs=1, batch_size=32, lr=1e-3, block_episodes=2, checkpoint_every_s=0)
        cfg.mdnrnn_train = MDNTrainConfig(steps=10, batch_size=4, seq_len=32, lr=1e-3, min_lr=1e-5,
                                          lr_decay=0.99999, checkpoint_every_s=0)
        cfg.cmaes = CMAESConfig(popsize=4, rollouts=2, generations=2, max_steps=100, workers=2, eval_every=0,
                                where="dream")
        cfg.dream = DreamConfig(max_steps=100)
        cfg.iterate = IterateConfig(iterations=0, episodes=2, noise=0.3, mdnrnn_steps=5)
        cfg.eval_episodes, cfg.eval_max_steps = 2, 100
    elif profile == "default":  # minutes on a 2-core CPU: chapter 10's run (it adds one round of iterate)
        cfg.collect = CollectConfig(episodes=16, max_steps=400, policy="held_random", min_length=100, workers=1)
        cfg.vae_train = VAETrainConfig(epochs=0.25, batch_size=64, lr=1e-3, block_episodes=4)
        cfg.mdnrnn_train = MDNTrainConfig(steps=100, batch_size=16, seq_len=32, lr=1e-3, min_lr=1e-5,
                                          lr_decay=0.99999)
        cfg.cmaes = CMAESConfig(popsize=12, rollouts=2, generations=4, max_steps=300, workers=2, eval_every=0,
                                where="dream")
        cfg.dream = DreamConfig(max_steps=300)
        cfg.iterate = IterateConfig(iterations=0, episodes=6, noise=0.3, mdnrnn_steps=40)
        cfg.eval_episodes, cfg.eval_max_steps = 2, 100
    elif profile == "gpu":  # about an hour on a 2-core CPU, minutes with a GPU. Not yet good enough: with these
        # sizes (and with 1,500 episodes, V ~1 epoch, M 502 steps) M does not generate approaching fireballs,
        # the dream fails the dream check and C scores ~170 in the real game. An M trained on ~30x more frames
        # (on a GPU, scripts/pretrained_doom.py) passes the check for standing still and random play, and then
        # needs rounds of the iterative procedure to stop C from exploiting held directions (pretrained/doom)
        cfg.collect = CollectConfig(episodes=600, max_steps=2100, policy="held_random", min_length=100)
        cfg.vae_train = VAETrainConfig(epochs=0.5, batch_size=100, lr=1e-3)
        cfg.mdnrnn_train = MDNTrainConfig(steps=500, batch_size=64, seq_len=250, lr=1e-3, min_lr=1e-4,
                                          lr_decay=0.995)
        cfg.cmaes = CMAESConfig(popsize=32, rollouts=8, generations=40, eval_every=10, eval_episodes=256,
                                where="dream")
        cfg.eval_episodes = 100
    else:  # paper
        cfg.collect = CollectConfig(episodes=10_000, max_steps=2100, policy="held_random", min_length=100)
        cfg.vae_train = VAETrainConfig(epochs=10, batch_size=100, lr=1e-4)
        cfg.mdnrnn_train = MDNTrainConfig(steps=24_000, batch_size=100, seq_len=500, lr=1e-3, min_lr=1e-5,
                                          lr_decay=0.99999)
        cfg.cmaes = CMAESConfig(popsize=64, rollouts=16, generations=200, eval_every=25, eval_episodes=1024,
                                where="dream")
        cfg.eval_episodes = 100
    return cfg


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise WMError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)} (smoke = seconds, "
                      "default = minutes on a laptop, gpu = a Colab-class GPU, paper = the paper's scale)")
    return profile


def get_config(env: str, profile: str = "default", seed: int = 0) -> RunConfig:
    """The whole run of `env` on `profile`: what `python -m wmlib run --profile PROFILE` and the chapters train.

    Introduced in chapter 1."""
    check_env_name(env)
    check_profile(profile)
    cfg = _carracing(profile) if env == "carracing" else _doom(profile)
    cfg.seed = int(seed)
    return cfg


def param_counts(env: str) -> dict:
    """Parameter counts of V, M and C at the paper's sizes, as in its table (chapter 1; `python -m wmlib info`)."""
    from ..controller import Controller
    from ..mdnrnn import MDNRNN
    from ..vae import ConvVAE
    cfg = get_config(env, "paper")
    vae, rnn, c = ConvVAE(cfg.vae), MDNRNN(cfg.mdnrnn), Controller(cfg.controller)
    count = lambda m: sum(p.numel() for p in m.parameters())
    return {"env": env, "vae": count(vae), "mdnrnn": rnn.paper_param_count(), "mdnrnn_pytorch": count(rnn),
            "controller": count(c), "z_size": cfg.vae.z_size, "rnn_hidden": cfg.mdnrnn.hidden_size,
            "controller_kind": cfg.controller.kind}


# What the book's chapters size themselves, per chapter and profile (a chapter that trains a whole run takes
# that from get_config). The keys are the chapters' file names; "doom_sweep" is the small tau sweep that
# chapters 8 and 9 share when the weights ship none. Change a value here and every chapter sees it.
TAUS = sorted(PAPER_TAU_TABLE)  # the paper's temperatures for Doom
CHAPTER_SIZES = {
    "world_models": {  # uniform random Doom episodes behind the noise estimate
        "smoke": dict(random_episodes=3), "default": dict(random_episodes=20),
        "gpu": dict(random_episodes=20), "paper": dict(random_episodes=100),
    },
    "vae_from_scratch": {  # images to train and test on; epochs of the main run and of each exercise run
        "smoke": dict(n_train=256, n_test=128, epochs=1, ex_epochs=1),
        "default": dict(n_train=5000, n_test=1000, epochs=8, ex_epochs=2),
        "gpu": dict(n_train=50_000, n_test=5000, epochs=30, ex_epochs=10),
        "paper": dict(n_train=50_000, n_test=5000, epochs=30, ex_epochs=10),
    },
    "v_carracing": {  # episodes for the data's statistics, frames in the grid, brownian episodes (exercise 4);
        # held-out episodes (shared with chapter 5, wmlib.book.carracing): `heldout` of the run's data policy,
        # `agent_heldout` of the shipped agent (at most `agent_steps` steps, `agent_noise` on its actions)
        "smoke": dict(stats_episodes=4, heldout=1, grid_frames=8, brownian=1, agent_heldout=1, agent_steps=110,
                      agent_noise=0.1),
        "default": dict(stats_episodes=32, heldout=2, grid_frames=16, brownian=2, agent_heldout=2, agent_steps=500,
                        agent_noise=0.1),
        "gpu": dict(stats_episodes=100, heldout=4, grid_frames=16, brownian=2, agent_heldout=4, agent_steps=1000,
                    agent_noise=0.1),
        "paper": dict(stats_episodes=200, heldout=8, grid_frames=16, brownian=4, agent_heldout=8, agent_steps=1000,
                      agent_noise=0.1),
    },
    "mixture_density_networks": {  # points, hidden units, mixture components, Adam steps on batches of `batch`;
        # draws per sampling check, temperatures in the sweep
        "smoke": dict(n_train=1000, n_test=500, hidden=32, mixtures=5, steps=200, batch=256, lr=1e-2,
                      check_draws=5_000, sweep_taus=4),
        "default": dict(n_train=2000, n_test=2000, hidden=32, mixtures=5, steps=3000, batch=256, lr=1e-2,
                        check_draws=20_000, sweep_taus=27),
        "gpu": dict(n_train=5000, n_test=5000, hidden=64, mixtures=5, steps=10000, batch=256, lr=1e-2,
                    check_draws=50_000, sweep_taus=40),
        "paper": dict(n_train=5000, n_test=5000, hidden=64, mixtures=5, steps=10000, batch=256, lr=1e-2,
                      check_draws=50_000, sweep_taus=40),
    },
    "m_carracing": {  # dreams: `starts` real frames per held-out agent episode (M reads the real steps before
        # each), `dreams` per start and temperature, `dream_steps` long, decoded every `every` steps for the
        # road measure; frames of the reader's own series for V's statistics
        "smoke": dict(starts=1, dreams=4, dream_steps=40, every=5, stats_frames=10_000),
        "default": dict(starts=2, dreams=4, dream_steps=200, every=5, stats_frames=100_000),
        "gpu": dict(starts=4, dreams=4, dream_steps=400, every=5, stats_frames=200_000),
        "paper": dict(starts=4, dreams=8, dream_steps=500, every=5, stats_frames=500_000),
    },
    "cma_es": {  # seeds and animation frames of the 2-D runs; the toy driving task; the exercises
        "smoke": dict(seeds=2, frames=10, toy_pop=8, toy_rollouts=2, toy_gens=5, toy_eval=32, ex_dim=4, ex_evals=3_000),
        "default": dict(seeds=10, frames=20, toy_pop=16, toy_rollouts=4, toy_gens=20, toy_eval=128, ex_dim=10,
                        ex_evals=50_000),
        "gpu": dict(seeds=10, frames=20, toy_pop=16, toy_rollouts=4, toy_gens=20, toy_eval=128, ex_dim=10,
                    ex_evals=50_000),
        "paper": dict(seeds=30, frames=24, toy_pop=64, toy_rollouts=16, toy_gens=40, toy_eval=512, ex_dim=10,
                      ex_evals=200_000),
    },
    "c_carracing": {  # tracks: fresh tracks the shipped C (and the zero controller, and your C) is scored on, each
        # cut at track_steps (None: the game's 1,000); video_steps: the shipped C's video; cmaes: your own C's CMA-ES
        # (the run's `cmaes` section changed by these); ex_*: the exercises' CMA-ES and episode length
        "smoke": dict(tracks=1, track_steps=50, video_steps=40, cmaes={}, ex_pop=4, ex_gens=1, ex_steps=20),
        "default": dict(tracks=4, track_steps=None, video_steps=600,
                        cmaes=dict(generations=6, max_steps=300, stall_steps=50), ex_pop=4, ex_gens=1, ex_steps=200),
        # gpu: the run's own CMA-ES (16 x 2 x 20 full games, ~640k steps) would take Colab's 2 CPUs about half an
        # hour (a GPU does not speed up the game); this is ~80k steps, a few minutes (not yet timed on Colab)
        "gpu": dict(tracks=16, track_steps=None, video_steps=800,
                    cmaes=dict(popsize=8, rollouts=1, generations=10, stall_steps=50), ex_pop=8, ex_gens=2, ex_steps=500),
        # the paper's population and rollouts for 25 of its 1,800 generations (hours on a many-core machine;
        # a later run with more generations continues this one)
        "paper": dict(tracks=100, track_steps=None, video_steps=800, cmaes=dict(generations=25, eval_every=0),
                      ex_pop=16, ex_gens=4, ex_steps=1000),
    },
    "doom_dream": {  # data: real episodes of the data policy; check: episodes per policy; real: agent episodes;
        # max_steps: where dream episodes end (the game's limit is 2,100; default halves it for a CPU);
        # cold_check: dream episodes per fixed policy in the cold dream (the tau table's explanation)
        "smoke": dict(data=1, check=4, real=2, max_steps=100, real_max_steps=100, video_steps=60, cold_check=8),
        "default": dict(data=4, check=6, real=4, max_steps=1000, real_max_steps=None, video_steps=500, cold_check=32),
        "gpu": dict(data=8, check=20, real=16, max_steps=2100, real_max_steps=None, video_steps=1000, cold_check=100),
        "paper": dict(data=32, check=100, real=100, max_steps=2100, real_max_steps=None, video_steps=2100,
                      cold_check=100),
    },
    "cheating": {  # dreams: batch of dreams per temperature, watched for dream_steps steps; real: agent episodes;
        # r0_dreams, r0_real: dream (one batch) and real episodes of round 0's C; along: dreams that follow one
        # recorded episode; r0_max_steps: where those dreams end (None: the game's 2,100; smoke cuts them short);
        # r2_real: real episodes of the final C (its model card has 100)
        "smoke": dict(dreams=4, dream_steps=40, data=1, score=4, real=2, max_steps=100, real_max_steps=100,
                      video_steps=40, taus=[0.1, 1.15], r0_dreams=8, r0_real=1, along=2,
                      r0_max_steps=600, r2_real=1),
        "default": dict(dreams=8, dream_steps=150, data=4, score=12, real=4, max_steps=1000, real_max_steps=None,
                        video_steps=400, taus=TAUS, r0_dreams=24, r0_real=6, along=6, r0_max_steps=None,
                        r2_real=2),
        "gpu": dict(dreams=16, dream_steps=500, data=8, score=32, real=16, max_steps=2100, real_max_steps=None,
                    video_steps=1000, taus=TAUS, r0_dreams=100, r0_real=16, along=16,
                    r0_max_steps=None, r2_real=16),
        "paper": dict(dreams=64, dream_steps=1000, data=16, score=100, real=100, max_steps=2100,
                      real_max_steps=None, video_steps=2100, taus=TAUS, r0_dreams=100, r0_real=100, along=16,
                      r0_max_steps=None, r2_real=100),
    },
    "doom_sweep": {  # CMA-ES candidates x rollouts for `generations`, each C scored over `episodes` episodes
        "smoke": dict(popsize=4, rollouts=2, generations=2, episodes=1, taus=[0.1, 1.15]),
        "default": dict(popsize=8, rollouts=2, generations=4, episodes=8, taus=[0.1, 1.15]),
        "gpu": dict(popsize=16, rollouts=4, generations=20, episodes=32, taus=TAUS),
        "paper": dict(popsize=64, rollouts=16, generations=200, episodes=100, taus=TAUS),
    },
    "beyond": {  # held-out episodes; dream and real episodes per score; the reward head; the noise exercise
        "smoke": dict(heldout=1, dream_eval=8, real_eval=1, head_steps=50, head_episodes=200, noise_episodes=1),
        "default": dict(heldout=3, dream_eval=16, real_eval=3, head_steps=300, head_episodes=200, noise_episodes=1),
        "gpu": dict(heldout=8, dream_eval=64, real_eval=8, head_steps=1000, head_episodes=200, noise_episodes=4),
        "paper": dict(heldout=16, dream_eval=256, real_eval=16, head_steps=1000, head_episodes=200,
                      noise_episodes=8),
    },
}


def chapter_sizes(chapter: str, profile: str) -> dict:
    """A copy of CHAPTER_SIZES[chapter][profile] (a chapter may change its copy; the others do not see it).

    Introduced in chapter 1."""
    check_profile(profile)
    if chapter not in CHAPTER_SIZES:
        raise WMError(f"no chapter sizes named {chapter!r}; use one of {', '.join(CHAPTER_SIZES)}")
    return copy.deepcopy(CHAPTER_SIZES[chapter][profile])
