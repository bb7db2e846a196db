"""Foundation benchmark: data collection, V and M training throughput, and V's memory vs data size.

Run from the repository root (wmlib need not be installed):

    python benchmarks/foundation.py            # full run, a few minutes on a 2-core CPU
    python benchmarks/foundation.py --quick    # every measurement shrunk, a sanity run (~1 minute)

Progress goes to stderr; stdout gets a table and, as its last line, one JSON object with every number.
Sizes (full / --quick; each can be overridden, see --help): CarRacing 4 / 2 episodes of at most
100 / 30 steps; Doom 8 / 2 episodes, max_steps 2100 / 150, min_length 0; V batch 100 / 32, 6 / 2
timed steps; M 16 x 999 / 4 x 100, 2 / 1 timed steps; memory 100 vs 1,000 / 20 vs 200 episodes of
2 / 1 frames. On a shared machine the numbers move with other people's load: the 1-minute load
average at the start and the end is printed with them.

What each number means
----------------------
collect.<env>.w1 / w2
    `wmlib.collect.collect(..., workers=1 | 2)` into a fresh temporary directory, same seed, so both
    runs write the very same episodes. steps/s = frames written (sum of len(obs) over the episode
    files, read back with `load_episode`) / wall time of the `collect` call. The wall time includes
    everything the call does: with workers=1 collect runs in this process (no pool; the env is made
    afresh: the module's env cache is cleared first); with workers=2 it spawns a 2-process pool, and
    the workers' start-up (interpreter, imports of torch/gymnasium/wmlib, env creation) is inside
    the measured time, since every `collect` call makes its own pool and no warm-up can carry over.
    speedup = steps/s(2 workers) / steps/s(1 worker).
collect.<env>.pool_startup_s
    Measured separately: a fresh 2-worker pool (`wmlib.parallel.make_executor(2)`) running one
    probe task per worker that makes the env (as a collecting worker does on its first task);
    seconds from creating the pool until the later of the two workers is ready. It approximates
    the fixed cost contained in the w2 wall time.
collect.carracing.w1_1thread
    Diagnostic: workers=1 again, with torch limited to one thread in this process (as the pool's
    workers are). The random_weights policy runs V and M on one frame at a time, where a
    multi-threaded torch on a loaded 2-core machine is much slower than a single thread.
vae.img_per_s
    Training steps of ConvVAE(z=32), Adam(lr 1e-4), batch of random uint8 frames converted by
    `frames_to_tensor`, loss `vae_loss`; images/s = batch * steps / time, after one warm-up step.
mdnrnn.env_steps_per_s
    Training steps of the CarRacing MDN-RNN (z 32, action 3, hidden 256, 5 mixtures) on random
    (mu, logvar, action) windows, z sampled each step, loss `mdn_nll` (masked), gradients clipped
    element-wise to [-1, 1] (as train_mdnrnn.py), Adam(lr 1e-3); env-steps/s = batch * seq * steps
    / time, after one warm-up step. The paper's batch is 100 x 999; a smaller batch is used on CPU.
vae_memory.<n>.peak_mib
    `wmlib.train_vae.train_vae` (1 epoch, batch 100, block_episodes 16) run in a fresh Python
    subprocess on n synthetic episode files of `--mem-frames` smooth 64x64x3 frames each (few frames:
    the run makes one optimiser step per 16-episode block at least, so 1,000 episodes cost 63 steps
    whatever T is; the child uses 1 torch thread, `--mem-threads`, to stay short). The peak
    is the child's VmHWM (/proc/self/status: highest resident set of the child's own process
    image). ru_maxrss is printed too, but on Linux it is *not* per run: exec carries the parent's
    high-water RSS into the child's ru_maxrss (the old address space's peak is folded into it),
    so it never reads below this (torch-loaded) benchmark process's own peak, whatever the child does.
    ratio = peak(large) / peak(small); the target is < 1.3 (memory must not grow with the data).
    baseline_mib is the child's RSS after imports, before training; delta_ratio compares
    (peak - baseline) of the two runs, a more sensitive view of the same thing.
    data_mib is the decoded size of the large set's frames: how much a loader that held the
    whole data set as uint8 would add to the peak. With few frames per episode this is small next
    to the ~500 MiB of torch + model, so the 1.3 target only catches growth of roughly that order;
    the delta ratio and the absolute MiB difference are the finer signal.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wmlib.checkpoint import save_npz
from wmlib.collect import collect
from wmlib.envs import cached_env, close_cached_envs
from wmlib.episodes import episode_path, load_episode
from wmlib.mdnrnn import MDNRNN, MDNRNNConfig, mdn_nll
from wmlib.parallel import make_executor
from wmlib.vae import ConvVAE, VAEConfig, frames_to_tensor, vae_loss

def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    return float("nan")


# ---------------------------------------------------------------------------------------------
# 1. collection


def _probe(env_name: str, max_steps: int, rendezvous: str, n: int) -> tuple[int, float]:
    """Runs in a pool worker: make the env as a collecting worker does, then wait until all n workers
    have done so (each holds its task, so no worker can take two); return (pid, time it was ready)."""
    cached_env(env_name, max_steps)
    ready = time.time()
    Path(rendezvous, str(os.getpid())).touch()
    deadline = time.time() + 120
    while len(os.listdir(rendezvous)) < n and time.time() < deadline:
        time.sleep(0.01)
    return os.getpid(), ready


def pool_startup(env_name: str, max_steps: int, n: int = 2) -> float:
    """Seconds from creating a fresh n-worker pool until every worker has imported wmlib and made the env."""
    with tempfile.TemporaryDirectory(prefix="wmbench_probe_") as rendezvous:
        t0 = time.time()
        ex = make_executor(n)
        try:
            got = [f.result() for f in [ex.submit(_probe, env_name, max_steps, rendezvous, n) for _ in range(n)]]
        finally:
            ex.shutdown()
    if len({pid for pid, _ in got}) != n:
        say(f"  note: the probes did not run on {n} distinct workers ({got}); start-up figure is unreliable")
    return max(ready for _, ready in got) - t0


def time_collect(env_name: str, policy: str, episodes: int, max_steps: int, min_length: int,
                 workers: int, seed: int = 0) -> dict:
    close_cached_envs()
    with tempfile.TemporaryDirectory(prefix=f"wmbench_{env_name}_") as d:
        t0 = time.perf_counter()
        files = collect(env_name, Path(d), episodes, seed=seed, policy=policy, max_steps=max_steps,
                        min_length=min_length, workers=workers, progress=False)
        wall = time.perf_counter() - t0
        lengths = [len(load_episode(f, keys=("obs",))["obs"]) for f in files]
    close_cached_envs()
    frames = int(sum(lengths))
    return {"workers": workers, "episodes": episodes, "frames": frames, "wall_s": wall,
            "steps_per_s": frames / wall, "lengths": lengths}


def bench_collect(env_name: str, policy: str, episodes: int, max_steps: int, min_length: int,
                  one_thread_diag: bool) -> dict:
    say(f"collect {env_name}: {episodes} episodes, max_steps {max_steps}, 1 worker")
    w1 = time_collect(env_name, policy, episodes, max_steps, min_length, 1)
    say(f"  {w1['frames']} frames in {w1['wall_s']:.1f}s; now 2 workers")
    w2 = time_collect(env_name, policy, episodes, max_steps, min_length, 2)
    say(f"  {w2['frames']} frames in {w2['wall_s']:.1f}s; now pool start-up probe")
    res = {"policy": policy, "max_steps": max_steps, "min_length": min_length, "w1": w1, "w2": w2,
           "speedup_2w_over_1w": w2["steps_per_s"] / w1["steps_per_s"],
           "same_episodes": w1["lengths"] == w2["lengths"],
           "pool_startup_s": pool_startup(env_name, max_steps)}
    if one_thread_diag:
        say("  diagnostic: 1 worker with torch.set_num_threads(1)")
        old = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            res["w1_1thread"] = time_collect(env_name, policy, episodes, max_steps, min_length, 1)
        finally:
            torch.set_num_threads(old)
        res["speedup_2w_over_1w_1thread"] = w2["steps_per_s"] / res["w1_1thread"]["steps_per_s"]
    return res


# ---------------------------------------------------------------------------------------------
# 2. V training throughput


def bench_vae(batch: int, steps: int) -> dict:
    say(f"V training: batch {batch}, 1 warm-up + {steps} timed steps")
    torch.manual_seed(0)
    cfg = VAEConfig(z_size=32)
    model = ConvVAE(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    frames = np.random.default_rng(0).integers(0, 256, size=(steps + 1, batch, 64, 64, 3), dtype=np.uint8)

    def step(i):
        x = frames_to_tensor(frames[i])
        loss = vae_loss(x, model(x, gen), cfg)
        opt.zero_grad(set_to_none=True)
        loss.loss.backward()
        opt.step()
        return loss.loss.item()

    step(0)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    wall = time.perf_counter() - t0
    return {"batch": batch, "steps": steps, "wall_s": wall, "s_per_step": wall / steps,
            "img_per_s": batch * steps / wall}


# ---------------------------------------------------------------------------------------------
# 3. M training throughput


def bench_mdnrnn(batch: int, seq: int, steps: int) -> dict:
    say(f"M training: batch {batch} x seq {seq}, 1 warm-up + {steps} timed steps")
    torch.manual_seed(0)
    cfg = MDNRNNConfig(z_size=32, action_size=3, hidden_size=256)
    model = MDNRNN(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(batch, seq + 1, cfg.z_size)
    logvar = torch.full((batch, seq + 1, cfg.z_size), -2.0)
    action = torch.rand(batch, seq, cfg.action_size) * 2 - 1
    z_mask = torch.ones(batch, seq, dtype=torch.bool)

    def step():
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen)
        out = model(z[:, :-1], action)
        loss = mdn_nll(out.logpi, out.mu, out.logsigma, z[:, 1:], z_mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    wall = time.perf_counter() - t0
    return {"batch": batch, "seq": seq, "steps": steps, "wall_s": wall, "s_per_step": wall / steps,
            "env_steps_per_s": batch * seq * steps / wall}


# ---------------------------------------------------------------------------------------------
# 4. V training memory vs data size


def smooth_frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """n smooth, distinct 64x64x3 uint8 images (low-frequency sinusoids): compress like real frames."""
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) / 64.0
    out = np.empty((n, 64, 64, 3), np.uint8)
    for i in range(n):
        img = np.zeros((64, 64, 3), np.float32)
        for c in range(3):
            fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            img[..., c] = 0.5 + 0.4 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def write_synthetic(directory: Path, episodes: int, frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pool = smooth_frames(rng, 64)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(episodes):
        idx = rng.integers(0, len(pool), size=frames)
        obs = np.roll(pool[idx], shift=int(rng.integers(0, 64)), axis=2)
        save_npz(episode_path(directory, i), obs=obs,
                 action=rng.uniform(-1, 1, size=(frames, 3)).astype(np.float32),
                 reward=rng.standard_normal(frames).astype(np.float32), done=np.zeros(frames, bool),
                 seed=np.int64(0), policy=np.str_("random_weights"))


def mem_child(episodes_dir: str, out_dir: str, threads: int) -> None:
    """Child process body: train V once, print one JSON line with its memory figures."""
    from wmlib.train_vae import VAETrainConfig, train_vae
    if threads > 0:
        torch.set_num_threads(threads)
    baseline = proc_status_mib("VmRSS")
    t0 = time.perf_counter()
    train_vae(Path(episodes_dir), Path(out_dir), "carracing", config=VAEConfig(z_size=32),
              train=VAETrainConfig(epochs=1, batch_size=100, lr=1e-4, block_episodes=16, checkpoint_every_s=1e9),
              seed=0, device="cpu", progress=False, log=lambda m: None)
    wall = time.perf_counter() - t0
    print(json.dumps({"vmhwm_mib": proc_status_mib("VmHWM"), "baseline_mib": baseline, "wall_s": wall,
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def run_mem_child(episodes_dir: Path, out_dir: Path, threads: int) -> dict:
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--mem-threads", str(threads),
                        "--_mem-child", str(episodes_dir), str(out_dir)], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"memory child failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_memory(small: int, large: int, frames: int, threads: int) -> dict:
    say(f"V memory: writing {large} synthetic episodes of {frames} frames")
    root = Path(tempfile.mkdtemp(prefix="wmbench_mem_"))
    try:
        big, little = root / f"eps_{large}", root / f"eps_{small}"
        t0 = time.perf_counter()
        write_synthetic(big, large, frames)
        little.mkdir()
        for i in range(small):  # the small set is the first `small` files of the large one
            src, dst = episode_path(big, i), episode_path(little, i)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        say(f"  written in {time.perf_counter() - t0:.1f}s; training V on {small} episodes (subprocess)")
        res = {"frames_per_episode": frames, "small_episodes": small, "large_episodes": large,
               "data_mib": large * frames * 64 * 64 * 3 / 2**20, "child_torch_threads": threads}
        res["small"] = run_mem_child(little, root / "out_small", threads)
        say(f"  peak {res['small']['vmhwm_mib']:.0f} MiB in {res['small']['wall_s']:.1f}s; "
            f"now {large} episodes")
        res["large"] = run_mem_child(big, root / "out_large", threads)
        say(f"  peak {res['large']['vmhwm_mib']:.0f} MiB in {res['large']['wall_s']:.1f}s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    s, l = res["small"], res["large"]
    res["ratio"] = l["vmhwm_mib"] / s["vmhwm_mib"]
    res["ratio_ru_maxrss"] = l["ru_maxrss_mib"] / s["ru_maxrss_mib"]
    ds, dl = s["vmhwm_mib"] - s["baseline_mib"], l["vmhwm_mib"] - l["baseline_mib"]
    res["delta_ratio"] = dl / ds if ds > 0 else float("nan")
    res["under_1_3"] = bool(res["ratio"] < 1.3)
    return res


# ---------------------------------------------------------------------------------------------
# report


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def report(res: dict) -> str:
    out = [f"wmlib foundation benchmark ({res['mode']}): {res['machine']['cpu_count']} CPUs, "
           f"torch {res['machine']['torch']} ({res['machine']['torch_threads']} threads), "
           f"cuda={res['machine']['cuda']}, load avg at start {res['machine']['loadavg_start']:.2f}, "
           f"at end {res['machine']['loadavg_end']:.2f}, total {res['total_s']:.0f}s", ""]
    rows = []
    for env, c in res["collect"].items():
        runs = [("1 worker", c["w1"]), ("2 workers", c["w2"])]
        if "w1_1thread" in c:
            runs.append(("1 worker, torch 1 thread", c["w1_1thread"]))
        for name, r in runs:
            rows.append([f"{env} ({c['policy']})", name, r["episodes"], r["frames"], f"{r['wall_s']:.1f}",
                         f"{r['steps_per_s']:.1f}"])
    out.append("1. collection (wall time includes the pool's spawn + imports + env creation)")
    out.append(table(rows, ["env", "run", "episodes", "frames", "wall s", "steps/s"]))
    for env, c in res["collect"].items():
        line = (f"   {env}: 2w/1w = {c['speedup_2w_over_1w']:.2f}x; 2-worker pool start-up "
                f"~{c['pool_startup_s']:.1f}s; same episodes in both runs: {c['same_episodes']}")
        if "speedup_2w_over_1w_1thread" in c:
            line += f"; 2w / (1w, 1 thread) = {c['speedup_2w_over_1w_1thread']:.2f}x"
        out.append(line)
    v, m = res["vae"], res["mdnrnn"]
    out += ["", "2-3. training throughput (CPU, after one warm-up step)",
            table([["V  ConvVAE z32, Adam", f"batch {v['batch']}", v["steps"], f"{v['s_per_step']:.2f}",
                    f"{v['img_per_s']:.1f} img/s"],
                   ["M  MDN-RNN z32 a3 h256, Adam", f"{m['batch']} x {m['seq']}", m["steps"],
                    f"{m['s_per_step']:.2f}", f"{m['env_steps_per_s']:.0f} env-steps/s"]],
                  ["model", "batch", "steps", "s/step", "throughput"])]
    mem = res["vae_memory"]
    rows = [[f"{mem[k + '_episodes']} episodes x {mem['frames_per_episode']} frames", f"{r['vmhwm_mib']:.0f}",
             f"{r['baseline_mib']:.0f}", f"{r['vmhwm_mib'] - r['baseline_mib']:.0f}",
             f"{r['ru_maxrss_mib']:.0f}", f"{r['wall_s']:.1f}"]
            for k, r in (("small", mem["small"]), ("large", mem["large"]))]
    out += ["", "4. peak memory of train_vae (fresh subprocess each; peak = child's VmHWM)",
            table(rows, ["data", "peak MiB", "baseline MiB", "peak-base", "ru_maxrss*", "train s"]),
            f"   ratio peak({mem['large_episodes']})/peak({mem['small_episodes']}) = {mem['ratio']:.3f} "
            f"-> {'PASS' if mem['under_1_3'] else 'FAIL'} (target < 1.3); (peak-base) ratio = "
            f"{mem['delta_ratio']:.3f}; the large set decoded is {mem['data_mib']:.0f} MiB",
            "   * ru_maxrss of an exec'd child is at least the parent's RSS high-water mark on Linux: not per run"]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shrink every measurement (sanity run)")
    ap.add_argument("--car-episodes", type=int, help="CarRacing episodes (full 4, quick 2)")
    ap.add_argument("--car-steps", type=int, help="CarRacing max_steps (full 100, quick 30)")
    ap.add_argument("--doom-episodes", type=int, help="Doom episodes (full 8, quick 2)")
    ap.add_argument("--doom-steps", type=int, help="Doom max_steps (full 2100, quick 150)")
    ap.add_argument("--vae-steps", type=int, help="timed V steps (full 6, quick 2)")
    ap.add_argument("--vae-batch", type=int, help="V batch (full 100, quick 32)")
    ap.add_argument("--mdn-steps", type=int, help="timed M steps (full 2, quick 1)")
    ap.add_argument("--mdn-batch", type=int, help="M batch (full 16, quick 4)")
    ap.add_argument("--mdn-seq", type=int, help="M sequence length (full 999, quick 100)")
    ap.add_argument("--mem-frames", type=int, help="frames per synthetic episode (full 2, quick 1)")
    ap.add_argument("--mem-threads", type=int, default=1,
                    help="torch threads in the memory children (default 1: faster on a shared 2-core box; "
                         "0 = torch's default)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads in this process for sections 1-3 (default 0 = torch's default, "
                         "as wmlib runs)")
    ap.add_argument("--mem-small", type=int, help="episodes of the small set (full 100, quick 20)")
    ap.add_argument("--mem-large", type=int, help="episodes of the large set (full 1000, quick 200)")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: collect,vae,mdnrnn,memory")
    ap.add_argument("--_mem-child", nargs=2, dest="mem_child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.mem_child:
        mem_child(*a.mem_child, a.mem_threads)
        return
    q = a.quick
    pick = lambda v, full, quick: v if v is not None else (quick if q else full)
    skip = set(filter(None, a.skip.split(",")))
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    res = {"mode": "quick" if q else "full",
           "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                       "cuda": torch.cuda.is_available(), "python": sys.version.split()[0],
                       "loadavg_start": os.getloadavg()[0]}}
    if "collect" not in skip:
        res["collect"] = {
            "carracing": bench_collect("carracing", "random_weights", pick(a.car_episodes, 4, 2),
                                       pick(a.car_steps, 100, 30), 0, one_thread_diag=True),
            "doom": bench_collect("doom", "held_random", pick(a.doom_episodes, 8, 2), pick(a.doom_steps, 2100, 150),
                                  0, one_thread_diag=False)}
    if "vae" not in skip:
        res["vae"] = bench_vae(pick(a.vae_batch, 100, 32), pick(a.vae_steps, 6, 2))
    if "mdnrnn" not in skip:
        res["mdnrnn"] = bench_mdnrnn(pick(a.mdn_batch, 16, 4), pick(a.mdn_seq, 999, 100), pick(a.mdn_steps, 2, 1))
    if "memory" not in skip:
        res["vae_memory"] = bench_memory(pick(a.mem_small, 100, 20), pick(a.mem_large, 1000, 200),
                                         pick(a.mem_frames, 2, 1), a.mem_threads)
    res["machine"]["loadavg_end"] = os.getloadavg()[0]
    res["total_s"] = time.perf_counter() - t_start
    if not skip:
        print(report(res))
    else:
        say("sections skipped: no table, JSON only")
    for c in res.get("collect", {}).values():  # keep the JSON line short
        for k in ("w1", "w2", "w1_1thread"):
            if k in c:
                c[k].pop("lengths", None)
    print(json.dumps(res, sort_keys=True, default=float))


if __name__ == "__main__":
    main()
