"""How fast the dream runs: one batched forward pass of M for N episodes versus one episode at a time.

    python benchmarks/dream_throughput.py [--weights DIR] [--quick]

Prints env-steps/s of `DreamVectorEnv` at N = 1,024 and of `DreamEnv` stepped one episode at a
time (as the authors' CMA-ES workers did, one process per episode), their ratio, and the wall time
of one CMA-ES generation at paper scale (64 candidates x 16 rollouts = 1,024 episodes) with
`dream_returns`. Without --weights, M is the paper's Doom M (LSTM 512) with random weights whose
done logit is pinned low, so every episode runs to the step cap: the generation time is then the
worst case (every episode survives `--gen-steps` steps). With --weights, the trained M decides.
The last stdout line is one JSON object.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wmlib.checkpoint import save_model, save_npz
from wmlib.controller import ControllerConfig
from wmlib.dream import DreamConfig, DreamEnv, DreamModel, DreamVectorEnv, dream_returns
from wmlib.mdnrnn import MDNRNN, MDNRNNConfig
from wmlib.vae import ConvVAE, VAEConfig


def random_doom_weights(folder: Path) -> Path:
    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(z_size=64, action_size=1, hidden_size=512, restart_input=True, done_head=True))
    with torch.no_grad():
        m.head.bias[-1] = -30.0  # never done: fixed-length episodes
    save_model(m, folder, "mdnrnn", "doom")
    save_model(ConvVAE(VAEConfig(z_size=64)), folder, "vae", "doom")
    rng = np.random.default_rng(0)
    save_npz(folder / "initial_z.npz", mu=rng.normal(size=(16, 64)).astype(np.float32),
             logvar=np.full((16, 64), -3, np.float32))
    return folder


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None)
    p.add_argument("--num-envs", type=int, default=1024)
    p.add_argument("--vector-steps", type=int, default=50)
    p.add_argument("--single-steps", type=int, default=500)
    p.add_argument("--gen-steps", type=int, default=2100, help="step cap of the paper-scale generation")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.quick:
        a.vector_steps, a.single_steps, a.gen_steps = 10, 100, 50
    tmp = tempfile.TemporaryDirectory()
    weights = Path(a.weights) if a.weights else random_doom_weights(Path(tmp.name))

    venv = DreamVectorEnv(weights, a.num_envs, tau=1.15, max_steps=10**9, device=a.device, env="doom")
    venv.reset(seed=0)
    actions = np.zeros((a.num_envs, 1), np.float32)
    venv.step(actions)  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.vector_steps):
        venv.step(actions)
    vec = a.num_envs * a.vector_steps / (time.perf_counter() - t0)

    env = DreamEnv(weights, tau=1.15, max_steps=10**9, device=a.device, env="doom")
    env.reset(seed=0)
    act = np.zeros(1, np.float32)
    env.step(act)
    t0 = time.perf_counter()
    for _ in range(a.single_steps):
        _, _, term, trunc, _ = env.step(act)
        if term or trunc:
            env.reset()
    single = a.single_steps / (time.perf_counter() - t0)

    model = DreamModel(weights, "doom", a.device)
    cfg = ControllerConfig(kind="zch", z_size=64, rnn_hidden=512, action_size=1)
    sols = np.random.default_rng(0).normal(0, 0.1, (64, 1088))
    t0 = time.perf_counter()
    ret = dream_returns(model, cfg, sols, rollouts=16, dream=DreamConfig(tau=1.15, max_steps=a.gen_steps), seed=0)
    gen_s = time.perf_counter() - t0

    print(f"device {a.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, weights: "
          f"{a.weights or 'random Doom M (LSTM 512), never done'}")
    print(f"vector dream, N = {a.num_envs:>5}: {vec:>10,.0f} env-steps/s")
    print(f"one episode at a time:     {single:>10,.0f} env-steps/s")
    print(f"ratio:                     {vec / single:>10.1f}x  (target >= 30x)")
    print(f"one CMA-ES generation, 64 x 16 = 1,024 episodes, {int(ret.sum()):,} env-steps "
          f"(mean episode {ret.mean():.0f} steps): {gen_s:.1f} s")
    print(json.dumps({"vector_env_steps_per_s": vec, "single_env_steps_per_s": single, "ratio": vec / single,
                      "num_envs": a.num_envs, "generation_s": gen_s, "generation_env_steps": int(ret.sum()),
                      "generation_mean_episode": float(ret.mean()), "device": a.device,
                      "weights": a.weights}))


if __name__ == "__main__":
    main()
