"""A lost wake-up in the asyncio channels that nbclient executes chapters through (jupyter/nbclient#312).

On a busy machine, right after a cell that displays an ipywidgets `interactive` (chapter 4's temperature
slider), the kernel's execute_reply sometimes sits unseen on the shell socket: `socket.poll(timeout)`
never wakes, and nbclient waits out the whole cell timeout (300 s in the tests' build, 1,800 s in a
reader's) before it sees the reply and goes on as if nothing happened. Polling in short slices finds the
waiting message at the next slice. book_offline.py applies this to the book build; tests/test_colab.py and
benchmarks/chapters.py to the notebooks they execute.
"""
import time
from queue import Empty

SLICE_S = 0.5


def patch() -> None:
    """Make jupyter_client's AsyncZMQSocketChannel.get_msg poll in slices of at most SLICE_S seconds."""
    from jupyter_client.channels import AsyncZMQSocketChannel

    original = AsyncZMQSocketChannel.get_msg
    if getattr(original, "sliced", False):
        return

    async def get_msg(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = SLICE_S if deadline is None else min(SLICE_S, max(0.0, deadline - time.monotonic()))
            try:
                return await original(self, step)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    get_msg.sliced = True
    AsyncZMQSocketChannel.get_msg = get_msg
