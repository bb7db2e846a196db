"""Streaming frames from episode files for V's training, in bounded memory.

Paper-scale CarRacing data is 10M frames (123 GB as uint8): it cannot sit in memory. Each epoch the
episode files are shuffled and cut into blocks of `block_episodes`; a block is decompressed, its
frames shuffled, and served as batches, while a background thread decompresses the next block
(zlib releases the GIL). Memory holds two blocks, whatever the data size. The order depends only on
(seed, epoch, block), so training can resume at any block boundary and replay the same stream.
"""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .collect import load_episode


def epoch_blocks(files: list[Path], block_episodes: int, seed: int, epoch: int) -> list[list[Path]]:
    order = np.random.default_rng([seed, epoch]).permutation(len(files))
    return [[files[i] for i in order[k:k + block_episodes]] for k in range(0, len(files), block_episodes)]


def load_block(files: list[Path], seed: int, epoch: int, block: int) -> np.ndarray:
    """Frames of the block's episodes, shuffled: uint8 (N, 64, 64, 3)."""
    frames = np.concatenate([load_episode(f, keys=("obs",))["obs"] for f in files])
    return frames[np.random.default_rng([seed, epoch, block, 1]).permutation(len(frames))]


def iterate_blocks(files: list[Path], block_episodes: int, seed: int, epoch: int, start_block: int = 0):
    """Yield (block index, shuffled frames) for one epoch from start_block on, prefetching one ahead."""
    blocks = epoch_blocks(files, block_episodes, seed, epoch)
    with ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(load_block, blocks[start_block], seed, epoch, start_block) if start_block < len(blocks) else None
        for b in range(start_block, len(blocks)):
            frames = nxt.result()
            nxt = pool.submit(load_block, blocks[b + 1], seed, epoch, b + 1) if b + 1 < len(blocks) else None
            yield b, frames
