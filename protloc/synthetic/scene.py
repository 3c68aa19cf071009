"""Cell geometry for one synthetic field of view, and the drawing primitives patterns use.

A scene is a handful of elliptical cells, each with an elliptical nucleus, on an R x R canvas.
Everything is computed once per scene as whole-image numpy maps (which cell owns a pixel, the
normalised elliptical distance to its boundary and to its nucleus), so patterns are a few
vectorised operations each. Dots are accumulated as impulses into a few buffers, one per blob
size, and blurred once per buffer; lines and rings are drawn by Pillow's C rasteriser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

# Blob sizes in pixels at a 128-px canvas; scaled with the canvas.
BLOB_SIGMA = {"tiny": 0.55, "small": 0.9, "medium": 1.5, "large": 2.6, "huge": 4.5}


@dataclass
class Cells:
    """Per-cell geometry, arrays of length n (pixels, radians)."""

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray  # semi-axes of the cell
    b: np.ndarray
    phi: np.ndarray
    nx: np.ndarray  # nucleus centre
    ny: np.ndarray
    na: np.ndarray  # nucleus semi-axes
    nb: np.ndarray
    nphi: np.ndarray

    @property
    def n(self) -> int:
        return len(self.cx)


def _ellipse_distance(x, y, cx, cy, a, b, phi) -> np.ndarray:
    """Normalised elliptical radius (1 on the boundary) over the grid ``y`` x ``x``."""
    dx, dy = x[None, :] - cx, y[:, None] - cy
    c, s = math.cos(phi), math.sin(phi)
    u = (dx * c + dy * s) * (1.0 / a)
    v = (dy * c - dx * s) * (1.0 / b)
    return np.sqrt(u * u + v * v)


def _box(cx: float, cy: float, radius: float, res: int) -> tuple[slice, slice]:
    y0, y1 = max(0, int(cy - radius)), min(res, int(cy + radius) + 2)
    x0, x1 = max(0, int(cx - radius)), min(res, int(cx + radius) + 2)
    return slice(y0, y1), slice(x0, x1)


def random_cells(rng: np.random.Generator, res: int) -> Cells:
    """2 to 7 cells of varying size on a jittered grid, each with an off-centre nucleus."""
    n = int(rng.integers(2, 8))
    grid = math.ceil(math.sqrt(n))
    slots = rng.permutation(grid * grid)[:n]
    pitch = res / grid
    cx = (slots % grid + 0.5 + rng.uniform(-0.2, 0.2, n)) * pitch
    cy = (slots // grid + 0.5 + rng.uniform(-0.2, 0.2, n)) * pitch
    radius = pitch * rng.uniform(0.42, 0.62, n)
    elong = rng.uniform(0.75, 1.0, n)
    a, b = radius, radius * elong
    phi = rng.uniform(0, math.pi, n)
    nscale = rng.uniform(0.38, 0.5, n)
    off = rng.uniform(0, 0.15, n) * radius
    theta = rng.uniform(0, 2 * math.pi, n)
    return Cells(
        cx=cx,
        cy=cy,
        a=a,
        b=b,
        phi=phi,
        nx=cx + off * np.cos(theta),
        ny=cy + off * np.sin(theta),
        na=a * nscale,
        nb=b * nscale * rng.uniform(0.8, 1.1, n),
        nphi=rng.uniform(0, math.pi, n),
    )


@dataclass
class Scene:
    """Geometry maps of one field of view plus the buffers patterns draw into."""

    res: int
    cells: Cells
    rng: np.random.Generator
    owner: np.ndarray = field(init=False)  # (R, R) index of the owning cell, -1 outside cells
    dcell: np.ndarray = field(init=False)  # (R, R) normalised distance to the owner's boundary
    dnuc: np.ndarray = field(init=False)  # (R, R) normalised distance to the owner's nucleus
    junction: np.ndarray = field(init=False)  # (R, R) 0..1, high where two cells touch
    _impulses: dict[str, np.ndarray] = field(init=False, default_factory=dict)
    _lines: Image.Image | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # Each cell is measured only inside its bounding box (with margin for soft edges and
        # junctions), keeping the nearest and second-nearest cell per pixel: about 3x fewer
        # operations than full-image maps for every cell.
        res, c = self.res, self.cells
        coords = np.arange(res, dtype=np.float32) + 0.5
        d1 = np.full((res, res), np.inf, np.float32)
        d2 = np.full((res, res), np.inf, np.float32)
        nearest = np.full((res, res), -1, np.int32)
        for i in range(c.n):
            ys, xs = _box(c.cx[i], c.cy[i], 1.2 * max(c.a[i], c.b[i]), res)
            d = _ellipse_distance(
                coords[xs], coords[ys], c.cx[i], c.cy[i], c.a[i], c.b[i], c.phi[i]
            )
            b1, b2, bn = d1[ys, xs], d2[ys, xs], nearest[ys, xs]
            closer = d < b1
            b2[...] = np.where(closer, b1, np.minimum(b2, d))
            b1[...] = np.where(closer, d, b1)
            bn[closer] = i
        self.dcell = d1
        self.owner = np.where(d1 < 1.0, nearest, -1)
        self.dnuc = np.full((res, res), np.inf, np.float32)
        for i in range(c.n):
            ys, xs = _box(c.nx[i], c.ny[i], 1.6 * max(c.na[i], c.nb[i]), res)
            d = _ellipse_distance(
                coords[xs], coords[ys], c.nx[i], c.ny[i], c.na[i], c.nb[i], c.nphi[i]
            )
            mine = nearest[ys, xs] == i
            self.dnuc[ys, xs][mine] = d[mine]
        self.junction = np.zeros((res, res), np.float32)
        touching = (d1 < 1.08) & (d2 < 1.15)
        self.junction[touching] = np.exp(-(((d2[touching] - d1[touching]) / 0.06) ** 2))

    @property
    def scale(self) -> float:
        """Pixels per unit at a 128-px canvas."""
        return self.res / 128.0

    # ---- soft masks

    def nucleus(self, edge: float = 0.12) -> np.ndarray:
        """1 inside nuclei, falling to 0 across the nuclear boundary."""
        inside = self.owner >= 0
        return inside * np.clip((1.0 - self.dnuc) / edge + 0.5, 0.0, 1.0)

    def cell(self, edge: float = 0.08) -> np.ndarray:
        """1 inside cells, falling to 0 across the cell boundary."""
        return np.clip((1.0 - self.dcell) / edge + 0.5, 0.0, 1.0)

    def cytoplasm(self) -> np.ndarray:
        """The cell without its nucleus."""
        return self.cell() * (1.0 - self.nucleus())

    def ring(self, distance: np.ndarray, at: float, width: float) -> np.ndarray:
        """A soft ring where a normalised distance map equals ``at``."""
        return (self.owner >= 0) * np.exp(-(((distance - at) / width) ** 2))

    def texture(self, cells_per_side: float = 16, low: float = 0.6) -> np.ndarray:
        """A smooth random field in [low, 1], for uneven staining."""
        k = max(2, int(cells_per_side))
        noise = self.rng.random((k, k)).astype(np.float32)
        big = np.asarray(
            Image.fromarray(noise, mode="F").resize((self.res, self.res), Image.BICUBIC)
        )
        return low + (1.0 - low) * np.clip(big, 0.0, 1.0)

    # ---- where things go

    def points(self, per_cell: np.ndarray | int, region: str, r_lo: float = 0.0, r_hi: float = 1.0):
        """Random points inside each cell's nucleus or cytoplasm: (x, y, cell index) arrays.

        ``region`` is 'nucleus' (r relative to the nucleus) or 'cytoplasm' (r relative to the cell,
        points inside the nucleus or owned by another cell are dropped).
        """
        c = self.cells
        counts = np.broadcast_to(np.asarray(per_cell), (c.n,)).astype(int)
        # Oversample the cytoplasm: some points fall in the nucleus or a neighbour.
        draw = counts * (3 if region == "cytoplasm" else 1)
        idx = np.repeat(np.arange(c.n), draw)
        m = len(idx)
        r = np.sqrt(self.rng.uniform(r_lo**2, r_hi**2, m))
        t = self.rng.uniform(0, 2 * math.pi, m)
        if region == "nucleus":
            ox, oy, a, b, phi = c.nx, c.ny, c.na, c.nb, c.nphi
        else:
            ox, oy, a, b, phi = c.cx, c.cy, c.a, c.b, c.phi
        u, v = r * np.cos(t) * a[idx], r * np.sin(t) * b[idx]
        cp, sp = np.cos(phi[idx]), np.sin(phi[idx])
        x, y = ox[idx] + u * cp - v * sp, oy[idx] + u * sp + v * cp
        xi = np.clip(x.astype(int), 0, self.res - 1)
        yi = np.clip(y.astype(int), 0, self.res - 1)
        keep = (self.owner[yi, xi] == idx) & (x >= 0) & (y >= 0) & (x < self.res) & (y < self.res)
        if region == "cytoplasm":
            keep &= self.dnuc[yi, xi] > 1.15
        x, y, idx = x[keep], y[keep], idx[keep]
        if region == "cytoplasm":  # keep at most the asked count per cell
            order = np.argsort(idx, kind="stable")
            x, y, idx = x[order], y[order], idx[order]
            rank = np.arange(len(idx)) - np.searchsorted(idx, idx)
            keep = rank < counts[idx]
            x, y, idx = x[keep], y[keep], idx[keep]
        return x, y, idx

    def beside_nucleus(self, distance: float = 1.25):
        """One point per cell just outside its nucleus, in a random direction: (x, y, angle)."""
        c = self.cells
        t = self.rng.uniform(0, 2 * math.pi, c.n)
        r = 0.5 * (c.na + c.nb) * distance
        return c.nx + r * np.cos(t), c.ny + r * np.sin(t), t

    # ---- drawing

    def dots(self, x, y, amplitude, size: str) -> None:
        """Gaussian blobs of one size class with the given peak amplitude(s)."""
        buf = self._impulses.setdefault(size, np.zeros((self.res, self.res), np.float32))
        xi, yi = np.asarray(x).astype(int), np.asarray(y).astype(int)
        ok = (xi >= 0) & (yi >= 0) & (xi < self.res) & (yi < self.res)
        sigma = BLOB_SIGMA[size] * self.scale
        amp = np.broadcast_to(np.asarray(amplitude, np.float32), xi.shape)[ok]
        np.add.at(buf, (yi[ok], xi[ok]), amp * (2 * math.pi * sigma * sigma))

    def line_canvas(self) -> ImageDraw.ImageDraw:
        """A Pillow drawing surface for thin structures (blurred slightly when composited)."""
        if self._lines is None:
            self._lines = Image.new("F", (self.res, self.res), 0.0)
        return ImageDraw.Draw(self._lines)

    def composite_points(self) -> np.ndarray:
        """Blur every impulse buffer at its size and add the line canvas: the point-like signal."""
        out = np.zeros((self.res, self.res), np.float32)
        for size, buf in self._impulses.items():
            out += gaussian_filter(buf, BLOB_SIGMA[size] * self.scale, truncate=3.0)
        if self._lines is not None:
            lines = np.asarray(self._lines, dtype=np.float32)
            out += gaussian_filter(lines, 0.6 * self.scale, truncate=3.0)
        self._impulses.clear()
        self._lines = None
        return out
