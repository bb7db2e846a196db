"""CarRacing-v3 with a faster renderer that draws exactly the same pixels.

    import wmlib.fast_carracing  # registers the id
    env = gymnasium.make("wmlib/FastCarRacing-v3")  # same keywords as CarRacing-v3

Why the original is slow
------------------------
gymnasium's `CarRacing` renders a frame every step, and its renderer is mostly Python bookkeeping:

- `_render_road` rebuilds the 400 grass squares every frame and pushes them and the ~400 road and
  kerb polygons one by one through `_draw_colored_polygon`. That makes a `pygame.math.Vector2` per
  vertex (~3,200 a frame) to rotate it, zooms and translates each in a list comprehension, then
  culls the polygon with a generator over its vertices.
- The cull is loose (any vertex within ~380 px of the screen), so more than half of the ~85
  polygons it keeps lie wholly off the 1000x800 surface. SDL_gfx still scans every row of them.
- The background ("field") polygon is never culled. At full zoom it is ~10,000 px tall, and SDL_gfx
  walks all of those rows to fill the 800 that are on the surface.
- `_render` loads the font from disk (`pygame.font.Font(...)`) every frame, and a fresh font has
  an empty glyph cache, so rendering the score text is slow as well.

Physics is ~2% of a step. What cannot be avoided is pygame filling the visible polygons on the
1000x800 window, flipping it and smooth-scaling it to 96x96.

What this does instead
----------------------
`FastCarRacing` subclasses `CarRacing` and replaces only the rendering hot paths:

- The grass and road geometry becomes numpy arrays once per track (`_TrackGeometry`).
- Each frame all vertices are rotated, zoomed and translated in a few vectorised float64 numpy
  operations. The order of operations is the same as in pygame's `Vector2.rotate_rad` and
  gymnasium's list comprehension, so every coordinate is bit-identical. The cos/sin pair comes
  from pygame itself (`Vector2(1, 0).rotate_rad(angle)`), so pygame's exact special cases for
  multiples of 90 degrees are reproduced too.
- The original's cull is applied to all vertices at once. Then polygons that cannot change a pixel
  are skipped: those whose vertices all lie well beyond one edge of the surface.
- When the background polygon covers the whole surface with margin to spare, its fill and
  anti-aliased outline would paint every pixel in `bg_color` and nothing else. In that case one
  `gfxdraw.box` over the surface, which parses the colour the same way, paints the same pixels.
- Every polygon that is drawn uses the same `gfxdraw` calls, in the same order, with the same
  Python float coordinates and the same colour objects.
- The font is created once (and again only if `pygame.quit()` invalidated it). The rendered score
  text is reused while the score string stays the same.

Everything else is gymnasium's own code: physics, rewards, terminations, the car, the dashboard and
`human` mode. Observations, rewards, terminated, truncated and info are identical to CarRacing-v3's
for the same seed and actions. tests/test_fast_carracing.py checks every byte, and
benchmarks/carracing_speed.py measures the speed-up.
"""
from __future__ import annotations

import gymnasium
import numpy as np
import pygame
from gymnasium.envs.box2d.car_racing import (
    GRASS_DIM,
    MAX_SHAPE_DIM,
    PLAYFIELD,
    SCALE,
    STATE_H,
    STATE_W,
    VIDEO_H,
    VIDEO_W,
    WINDOW_H,
    WINDOW_W,
    ZOOM,
    CarRacing,
)
from pygame import gfxdraw

ENV_ID = "wmlib/FastCarRacing-v3"

# The original's culling box, computed the same way as its chained comparisons compute it.
_X_MIN, _X_MAX = -MAX_SHAPE_DIM, WINDOW_W + MAX_SHAPE_DIM
_Y_MIN, _Y_MAX = -MAX_SHAPE_DIM, WINDOW_H + MAX_SHAPE_DIM

# Slack, in pixels, for the two "draws nothing / paints everything" shortcuts. SDL_gfx truncates
# coordinates to ints, rounds its 16.16 fixed-point scanline crossings, and an anti-aliased edge
# touches pixels next to the line. Each of these moves a drawn pixel by at most 1-2 px.
_MARGIN = 8
# Above this |coordinate|, SDL_gfx's 16.16 int arithmetic could overflow. The background shortcut
# is only taken below it.
_SAFE_COORD = 16000
# Corners of the surface grown by _MARGIN: (4,) x and y, for the background shortcut.
_GROWN_X = np.array([-_MARGIN, WINDOW_W - 1 + _MARGIN, WINDOW_W - 1 + _MARGIN, -_MARGIN], dtype=np.float64)
_GROWN_Y = np.array([-_MARGIN, -_MARGIN, WINDOW_H - 1 + _MARGIN, WINDOW_H - 1 + _MARGIN], dtype=np.float64)

# The background polygon of `_render_road`, as (4,) x and y arrays.
_FIELD_X = np.array([PLAYFIELD, PLAYFIELD, -PLAYFIELD, -PLAYFIELD], dtype=np.float64)
_FIELD_Y = np.array([PLAYFIELD, -PLAYFIELD, -PLAYFIELD, PLAYFIELD], dtype=np.float64)


def _grass_vertices() -> np.ndarray:
    """The 400 grass squares of `_render_road`, in its loop order, as a (400, 4, 2) float64 array.

    Same float expressions as the original (`GRASS_DIM * x + GRASS_DIM`, ...), so same values.
    """
    polys = []
    for x in range(-20, 20, 2):
        for y in range(-20, 20, 2):
            polys.append([
                (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + 0),
                (GRASS_DIM * x + 0, GRASS_DIM * y + 0),
                (GRASS_DIM * x + 0, GRASS_DIM * y + GRASS_DIM),
                (GRASS_DIM * x + GRASS_DIM, GRASS_DIM * y + GRASS_DIM),
            ])
    return np.array(polys, dtype=np.float64)


_GRASS = _grass_vertices()


class _TrackGeometry:
    """Grass, then road and kerb polygons of one track (the original's drawing order), as arrays.

    `x`, `y` are (N, 4) float64 world coordinates. Road colours are kept as the original colour
    objects, not copied. When the car touches a tile, `FrictionDetector` changes the tile's colour
    array in place, and the original reads that array each time it draws.
    """

    def __init__(self, road_poly: list):
        self.source = road_poly  # to notice when reset() builds a new track (identity, not id())
        self.n_road = len(road_poly)
        road = np.array([poly for poly, _ in road_poly], dtype=np.float64).reshape(-1, 4, 2)
        verts = np.concatenate([_GRASS, road])
        self.x = np.ascontiguousarray(verts[..., 0])
        self.y = np.ascontiguousarray(verts[..., 1])
        self.n_grass = len(_GRASS)
        self.road_colors = [color for _, color in road_poly]

    def matches(self, road_poly: list) -> bool:
        return self.source is road_poly and self.n_road == len(road_poly)


def _cos_sin(angle: float) -> tuple[float, float]:
    """pygame's own cos and sin for `Vector2.rotate_rad(angle)`.

    rotate_rad reduces the angle with fmod before it takes sin and cos. It also snaps angles within
    1e-6 of a multiple of 90 degrees to exact swaps. Rotating (1, 0) returns (cos*1 - sin*0,
    sin*1 + cos*0), which is exactly (cos, sin) in either branch. So rotating all vertices with this
    pair reproduces both behaviours.
    """
    c, s = pygame.math.Vector2(1.0, 0.0).rotate_rad(angle)
    return c, s


def _to_screen(x, y, zoom, translation, angle):
    """Rotate, zoom and translate vertices. float64, in the original's order of operations.

    Per vertex, the original does v = Vector2(p).rotate_rad(angle), which computes
    (cos*x - sin*y, sin*x + cos*y) in C doubles, then (v[0] * zoom + t[0], v[1] * zoom + t[1]).
    """
    c, s = _cos_sin(angle)
    rx = c * x - s * y
    ry = s * x + c * y
    return rx * zoom + translation[0], ry * zoom + translation[1]


def _visible(px, py) -> np.ndarray:
    """Indices, in drawing order, of the polygons that the original draws and that can change a pixel.

    px, py: (N, 4) screen coordinates. The first test is the original's cull: keep a polygon if any
    vertex is inside the screen grown by MAX_SHAPE_DIM. That box is loose, so the second test drops
    polygons whose vertices all lie more than _MARGIN px beyond the same edge of the surface. Such a
    polygon writes no pixel: its fill stays inside its vertices' convex hull, its anti-aliased
    outline stays within a pixel or two of its edges, and SDL_gfx clips every write to the surface.
    """
    kept = ((_X_MIN <= px) & (px <= _X_MAX) & (_Y_MIN <= py) & (py <= _Y_MAX)).any(axis=1)
    off = ((px < -_MARGIN).all(axis=1) | (px > WINDOW_W - 1 + _MARGIN).all(axis=1)
           | (py < -_MARGIN).all(axis=1) | (py > WINDOW_H - 1 + _MARGIN).all(axis=1))
    return np.flatnonzero(kept & ~off)


def _covers_surface(px, py) -> bool:
    """Whether the background quad, as SDL_gfx sees it, contains the surface grown by _MARGIN.

    If it does, every surface pixel is more than _MARGIN px inside the quad's edges. The quad's
    fill then paints all of them, and its anti-aliased outline paints none.
    """
    vx, vy = np.trunc(px), np.trunc(py)  # gfxdraw truncates coordinates to ints
    if max(np.abs(vx).max(), np.abs(vy).max()) > _SAFE_COORD:
        return False
    ex, ey = np.roll(vx, -1) - vx, np.roll(vy, -1) - vy  # edge vectors
    # cross[i, j]: side of edge j that grown corner i lies on. Inside a convex quad means the same
    # sign for every edge; that sign depends on the winding, so either sign is accepted.
    cross = ex * (_GROWN_Y[:, None] - vy) - ey * (_GROWN_X[:, None] - vx)
    return bool((cross > 0).all() or (cross < 0).all())


class FastCarRacing(CarRacing):
    """`CarRacing` (v3) with a vectorised road renderer and a cached font; same pixels."""

    _geometry: _TrackGeometry | None = None
    _font: pygame.font.Font | None = None
    _text_cache: tuple[str, pygame.Surface] | None = None

    def _render_road(self, zoom, translation, angle):
        self._draw_background(zoom, translation, angle)

        geo = self._track_geometry()
        px, py = _to_screen(geo.x, geo.y, zoom, translation, angle)
        idx = _visible(px, py)
        # Nested lists of Python floats: gfxdraw truncates them to ints, as it does the
        # original's tuples of Python floats.
        polys = np.stack([px[idx], py[idx]], axis=-1).tolist()
        for i, poly in zip(idx.tolist(), polys):
            self._draw_polygon(poly, self._polygon_color(geo, i))

    def _draw_background(self, zoom, translation, angle):
        px, py = _to_screen(_FIELD_X, _FIELD_Y, zoom, translation, angle)
        if _covers_surface(px, py):
            # Same pixels as the polygon's fill and outline. gfxdraw.box parses the colour the
            # same way (it may be a float array under domain_randomize) and writes it opaque.
            gfxdraw.box(self.surf, self.surf.get_rect(), self.bg_color)
        else:  # during the zoom-in, or near the playfield's edge: draw it as the original does
            self._draw_polygon(np.stack([px, py], axis=-1).tolist(), self.bg_color)

    def _track_geometry(self) -> _TrackGeometry:
        """The cached arrays for the current track, rebuilt after reset() made a new one."""
        if self._geometry is None or not self._geometry.matches(self.road_poly):
            self._geometry = _TrackGeometry(self.road_poly)
        return self._geometry

    def _polygon_color(self, geo: _TrackGeometry, i: int):
        if i < geo.n_grass:
            return self.grass_color  # the same object the original passes (may be a float array)
        # Read now, not at track creation: tile colours change when the car touches them.
        return [int(c) for c in geo.road_colors[i - geo.n_grass]]

    def _draw_polygon(self, poly, color):
        gfxdraw.aapolygon(self.surf, poly, color)
        gfxdraw.filled_polygon(self.surf, poly, color)

    def _score_text(self) -> pygame.Surface:
        """The score, rendered as the original renders it, reusing one font and the last text."""
        label = f"{self.reward:04.0f}"
        if self._text_cache is not None and self._text_cache[0] == label:
            return self._text_cache[1]
        try:
            text = self._score_font().render(label, True, (255, 255, 255), (0, 0, 0))
        except pygame.error:  # "font module quit since font created": someone called pygame.quit()
            self._font = None
            text = self._score_font().render(label, True, (255, 255, 255), (0, 0, 0))
        self._text_cache = (label, text)
        return text

    def _score_font(self) -> pygame.font.Font:
        # The original loads this from disk every frame. A new Font also starts with no glyphs.
        if self._font is None:
            self._font = pygame.font.Font(pygame.font.get_default_font(), 42)
        return self._font

    def _render(self, mode: str):
        # gymnasium's _render line for line, except where the score text comes from.
        assert mode in self.metadata["render_modes"]

        pygame.font.init()
        if self.screen is None and mode == "human":
            pygame.display.init()
            self.screen = pygame.display.set_mode((WINDOW_W, WINDOW_H))
        if self.clock is None:
            self.clock = pygame.time.Clock()

        if "t" not in self.__dict__:
            return  # reset() not called yet

        self.surf = pygame.Surface((WINDOW_W, WINDOW_H))

        assert self.car is not None
        angle = -self.car.hull.angle
        # Animating first second zoom.
        zoom = 0.1 * SCALE * max(1 - self.t, 0) + ZOOM * SCALE * min(self.t, 1)
        scroll_x = -(self.car.hull.position[0]) * zoom
        scroll_y = -(self.car.hull.position[1]) * zoom
        trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (WINDOW_W / 2 + trans[0], WINDOW_H / 4 + trans[1])

        self._render_road(zoom, trans, angle)
        # The car (~10 polygons, ~3% of a step) is drawn by gymnasium's own code.
        self.car.draw(self.surf, zoom, trans, angle, mode not in ["state_pixels_list", "state_pixels"])

        self.surf = pygame.transform.flip(self.surf, False, True)

        # showing stats (gymnasium's code: 7 small polygons, ~1% of a step)
        self._render_indicators(WINDOW_W, WINDOW_H)

        text = self._score_text()
        text_rect = text.get_rect()
        text_rect.center = (60, WINDOW_H - WINDOW_H * 2.5 / 40.0)
        self.surf.blit(text, text_rect)

        if mode == "human":
            pygame.event.pump()
            self.clock.tick(self.metadata["render_fps"])
            assert self.screen is not None
            self.screen.fill(0)
            self.screen.blit(self.surf, (0, 0))
            pygame.display.flip()
        elif mode == "rgb_array":
            return self._create_image_array(self.surf, (VIDEO_W, VIDEO_H))
        elif mode == "state_pixels":
            return self._create_image_array(self.surf, (STATE_W, STATE_H))
        else:
            return self.isopen

    def close(self):
        super().close()
        self._font = None  # close() may have called pygame.quit(), which invalidates fonts


if ENV_ID not in gymnasium.envs.registry:
    gymnasium.register(id=ENV_ID, entry_point="wmlib.fast_carracing:FastCarRacing",
                       max_episode_steps=1000, reward_threshold=900)
