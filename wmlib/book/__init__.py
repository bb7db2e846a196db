"""What only the book's chapters use: set-up, glue, figures and videos (notebook.py), and what the
Doom chapters 8 and 9 share (doom.py). A chapter imports these as `from wmlib.book import ...`."""
from .notebook import book_run_config, glue, on_colab, quote, setup, show_frames, video, video_bytes

__all__ = ["book_run_config", "glue", "on_colab", "quote", "setup", "show_frames", "video", "video_bytes"]
