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


class ImageSlider:
    """Pictures computed in advance and a slider that switches between them in plain JavaScript: one output
    that works the same in the built book (no kernel), in Jupyter and on Colab. Chapter 4."""

    _count = 0

    def __init__(self, images: list[bytes], labels: list[str], name: str, start: int = 0):
        if not images or len(images) != len(labels) or not 0 <= start < len(images):
            raise ValueError(f"image_slider needs as many labels as images (got {len(images)} images, "
                             f"{len(labels)} labels) and a start among them (got {start})")
        self.images, self.labels, self.name, self.start = images, labels, name, start
        ImageSlider._count += 1
        self.id = f"wm-slider-{ImageSlider._count}-{id(self):x}"

    def __repr__(self) -> str:
        return f"<{len(self.images)} pictures behind a slider: {self.name} = {', '.join(self.labels)}>"

    def _repr_html_(self) -> str:
        import base64
        import html
        import json
        srcs = ["data:image/png;base64," + base64.b64encode(b).decode("ascii") for b in self.images]
        s = self.start
        return (f'<div id="{self.id}" class="wm-image-slider" data-shown="{s}">'
                f'<label style="display:flex;align-items:center;gap:8px;max-width:640px">{html.escape(self.name)} '
                f'<input type="range" min="0" max="{len(srcs) - 1}" step="1" value="{s}" style="flex:1" '
                f'aria-label="{html.escape(self.name)}"> <output>{html.escape(self.labels[s])}</output></label>'
                f'<img src="{srcs[s]}" alt="{html.escape(self.labels[s])}" style="max-width:100%"></div>\n'
                f'<script>(function () {{\n'
                f'  const root = document.getElementById({json.dumps(self.id)});\n'
                f'  const srcs = {json.dumps(srcs)}, labels = {json.dumps(self.labels)};\n'
                f'  const slider = root.querySelector("input"), shown = root.querySelector("output"), '
                f'img = root.querySelector("img");\n'
                f'  slider.addEventListener("input", () => {{\n'
                f'    const i = +slider.value;\n'
                f'    img.src = srcs[i]; img.alt = labels[i]; shown.textContent = labels[i]; root.dataset.shown = i;\n'
                f'  }});\n'
                f'}})();</script>')


def figure_png(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes, and the figure closed (it is not shown). Chapter 4."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def image_slider(images: list[bytes], labels: list[str], name: str, start: int = 0) -> ImageSlider:
    """A slider over PNG pictures (bytes) made in advance, labelled `labels`, under `name`, opening at `start`.

    Introduced in chapter 4.
    """
    return ImageSlider(list(images), [str(x) for x in labels], name, start)
