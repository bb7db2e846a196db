"""Pictures the chapters build from uint8 frames (H, W, 3): a PNG for a widget, a mosaic for one imshow, a movie
of several movies side by side. show_frames and video (in notebook.py) display them."""
import io

import numpy as np


def png(image, scale: int = 4) -> bytes:
    """A uint8 image (H, W, 3) as PNG bytes, upscaled `scale` x by nearest neighbour: what an ipywidgets
    Image shows (chapter 2). A row of frames side by side is one image: np.concatenate(frames, axis=1)."""
    from PIL import Image

    image = np.asarray(image)
    h, w = image.shape[:2]
    buf = io.BytesIO()
    Image.fromarray(image).resize((w * scale, h * scale), Image.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def mosaic(rows, gap: int = 2) -> np.ndarray:
    """A list of rows of uint8 frames -> one image with white gaps (chapter 3; one imshow keeps a figure small)."""
    h, w = rows[0][0].shape[:2]
    out = np.full((len(rows) * (h + gap) - gap, len(rows[0]) * (w + gap) - gap, 3), 255, np.uint8)
    for r, frames in enumerate(rows):
        for c, f in enumerate(frames):
            out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = f
    return out


def side_by_side(*movies, length: int | None = None) -> np.ndarray:
    """Movies (T_i, H, W, 3) -> one movie of `length` frames (None: the longest), 2-pixel white gaps between
    them (chapter 5). A movie that ends early holds its last frame, dimmed."""
    length = length or max(len(m) for m in movies)
    padded = []
    for m in movies:
        m = np.asarray(m)[:length]
        if len(m) < length:
            m = np.concatenate([m, np.repeat((m[-1:] * 0.5).astype(np.uint8), length - len(m), axis=0)])
        padded.append(m)
    gap = np.full((length, padded[0].shape[1], 2, 3), 255, np.uint8)
    return np.concatenate([padded[0]] + [x for m in padded[1:] for x in (gap, m)], axis=2)
