"""The book's one video helper: H.264 mp4 that browsers play, upscaled, size-capped, clear errors."""
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from wmlib.book.notebook import video, video_bytes


def _probe(data: bytes, tmp_path) -> str:
    p = tmp_path / "v.mp4"
    p.write_bytes(data)
    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(p)], capture_output=True, text=True).stderr


def test_video_is_h264_upscaled_with_duration(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    info = _probe(video_bytes(frames, fps=15, scale=3), tmp_path)
    assert "h264" in info and "yuv420p" in info and "192x192" in info
    assert "Duration: 00:00:02.00" in info
    html = video(frames, fps=15, scale=2, caption="noise").data
    assert html.count("data:video/mp4;base64,") == 1 and "<figcaption>noise</figcaption>" in html


def test_video_bad_input_and_cap():
    with pytest.raises(ValueError, match=r"uint8 frames of shape \(T, H, W, 3\)"):
        video_bytes(np.zeros((4, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        video_bytes(np.zeros((4, 64, 64, 3), np.float32))
    noise = np.random.default_rng(1).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="over the 0.0 MB cap"):
        video_bytes(noise, max_bytes=1000)
