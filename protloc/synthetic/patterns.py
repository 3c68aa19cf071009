"""What each channel shows: the three landmark stains and the 28 green-channel patterns.

Every pattern takes a :class:`Scene` and an amplitude and either returns a dense (R, R) map or
draws dots and lines into the scene's buffers (returns ``None``). They are drawn to be told apart
by shape and place at 128 px: nuclear fills, rims and dots of several sizes and counts, cytoplasmic
fills, rims, dots, rings, filaments of several kinds, and a few one-per-image structures.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from protloc.synthetic.scene import Scene


def _cell_point(s: Scene, i: np.ndarray, r: np.ndarray, tau: np.ndarray):
    """Points at relative radius ``r`` and parametric angle ``tau`` on cell ``i``'s ellipse."""
    c = s.cells
    u, v = r * np.cos(tau) * c.a[i], r * np.sin(tau) * c.b[i]
    cp, sp = np.cos(c.phi[i]), np.sin(c.phi[i])
    return c.cx[i] + u * cp - v * sp, c.cy[i] + u * sp + v * cp


def _filaments(
    s: Scene, per_cell: int, amp: float, width: float, r_start: float, bend: float
) -> None:
    """Slightly curved filaments from near each nucleus out to the cell periphery."""
    draw = s.line_canvas()
    rng = s.rng
    w = max(1, round(width * s.scale))
    for i in range(s.cells.n):
        tau = rng.uniform(0, 2 * math.pi, per_cell)
        idx = np.full(per_cell, i)
        pts = [
            _cell_point(s, idx, np.full(per_cell, r), tau + rng.normal(0, bend, per_cell))
            for r in (r_start, 0.55, 0.75, 0.93)
        ]
        for k in range(per_cell):
            draw.line([(float(px[k]), float(py[k])) for px, py in pts], fill=amp, width=w)


# ----------------------------------------------------------------------------- landmark stains


def microtubule_stain(s: Scene, amp: float) -> np.ndarray:
    """Red: radial microtubules over a faint cytoplasmic fill."""
    _filaments(s, per_cell=22, amp=amp * 0.8, width=0.8, r_start=0.3, bend=0.15)
    return amp * 0.18 * s.cytoplasm() * s.texture(10, 0.5)


def nucleus_stain(s: Scene, amp: float) -> np.ndarray:
    """Blue: nuclei with uneven chromatin."""
    return amp * s.nucleus() * s.texture(20, 0.55)


def er_stain(s: Scene, amp: float) -> np.ndarray:
    """Yellow: reticular ER, densest around the nucleus."""
    perinuclear = np.clip(1.25 - s.dcell, 0.0, 1.0)
    reticulum = s.texture(40, 0.0) ** 2
    return amp * s.cytoplasm() * perinuclear * (0.35 + 0.65 * reticulum)


# ----------------------------------------------------------------------------- green patterns


def nucleoplasm(s: Scene, amp: float):
    return amp * s.nucleus() * s.texture(12, 0.7)


def nuclear_membrane(s: Scene, amp: float):
    return amp * s.ring(s.dnuc, 0.97, 0.09)


def nucleoli(s: Scene, amp: float):
    x, y, _ = s.points(s.rng.integers(2, 5, s.cells.n), "nucleus", 0.0, 0.6)
    s.dots(x, y, amp, "large")


def nucleoli_fibrillar_center(s: Scene, amp: float):
    cx, cy, _ = s.points(s.rng.integers(2, 4, s.cells.n), "nucleus", 0.0, 0.55)
    k = 5
    x = np.repeat(cx, k) + s.rng.normal(0, 1.6 * s.scale, len(cx) * k)
    y = np.repeat(cy, k) + s.rng.normal(0, 1.6 * s.scale, len(cy) * k)
    s.dots(x, y, amp, "tiny")


def nuclear_speckles(s: Scene, amp: float):
    x, y, _ = s.points(s.rng.integers(14, 26, s.cells.n), "nucleus", 0.0, 0.9)
    s.dots(x, y, amp * s.rng.uniform(0.5, 1.0, len(x)), "small")
    return 0.12 * amp * s.nucleus()


def nuclear_bodies(s: Scene, amp: float):
    x, y, _ = s.points(s.rng.integers(1, 4, s.cells.n), "nucleus", 0.0, 0.85)
    s.dots(x, y, amp * 1.2, "small")


def endoplasmic_reticulum(s: Scene, amp: float):
    return er_stain(s, amp * 1.1)


def golgi(s: Scene, amp: float):
    """A crescent of blobs hugging one side of each nucleus."""
    c, k = s.cells, 9
    t = np.repeat(s.rng.uniform(0, 2 * math.pi, c.n), k) + s.rng.uniform(-0.7, 0.7, c.n * k)
    r = np.repeat(0.5 * (c.na + c.nb), k) * s.rng.uniform(1.15, 1.45, c.n * k)
    s.dots(
        np.repeat(c.nx, k) + r * np.cos(t), np.repeat(c.ny, k) + r * np.sin(t), amp * 0.8, "medium"
    )


def peroxisomes(s: Scene, amp: float):
    x, y, _ = s.points(s.rng.integers(25, 40, s.cells.n), "cytoplasm", 0.0, 0.95)
    s.dots(x, y, amp * 0.7, "tiny")


def endosomes(s: Scene, amp: float):
    x, y, _ = s.points(s.rng.integers(10, 18, s.cells.n), "cytoplasm", 0.0, 0.7)
    s.dots(x, y, amp * 0.8, "small")


def lysosomes(s: Scene, amp: float):
    x, y, _ = s.points(s.rng.integers(6, 12, s.cells.n), "cytoplasm", 0.0, 0.95)
    s.dots(x, y, amp * 0.75, "medium")


def intermediate_filaments(s: Scene, amp: float):
    _filaments(s, per_cell=10, amp=amp * 0.8, width=1.0, r_start=0.45, bend=0.6)


def actin_filaments(s: Scene, amp: float):
    """Straight parallel stress fibres across each cell."""
    draw = s.line_canvas()
    w = max(1, round(0.9 * s.scale))
    c = s.cells
    for i in range(c.n):
        angle = s.rng.uniform(0, math.pi)
        offsets = np.linspace(-0.8, 0.8, 7) * min(c.a[i], c.b[i])
        dx, dy = math.cos(angle), math.sin(angle)
        half = 0.9 * max(c.a[i], c.b[i])
        for off in offsets:
            ox, oy = c.cx[i] - dy * off, c.cy[i] + dx * off
            draw.line(
                [(ox - dx * half, oy - dy * half), (ox + dx * half, oy + dy * half)],
                fill=amp * 0.7,
                width=w,
            )


def focal_adhesions(s: Scene, amp: float):
    """Short radial dashes at the cell periphery."""
    draw = s.line_canvas()
    w = max(1, round(1.3 * s.scale))
    for i in range(s.cells.n):
        k = int(s.rng.integers(8, 14))
        tau = s.rng.uniform(0, 2 * math.pi, k)
        idx = np.full(k, i)
        x0, y0 = _cell_point(s, idx, np.full(k, 0.78), tau)
        x1, y1 = _cell_point(s, idx, np.full(k, 0.92), tau)
        for j in range(k):
            draw.line([(x0[j], y0[j]), (x1[j], y1[j])], fill=amp, width=w)


def microtubules(s: Scene, amp: float):
    _filaments(s, per_cell=22, amp=amp * 0.7, width=0.8, r_start=0.3, bend=0.15)


def microtubule_ends(s: Scene, amp: float):
    idx = np.repeat(np.arange(s.cells.n), 16)
    tau = s.rng.uniform(0, 2 * math.pi, len(idx))
    x, y = _cell_point(s, idx, s.rng.uniform(0.85, 0.95, len(idx)), tau)
    s.dots(x, y, amp * 0.9, "tiny")


def cytokinetic_bridge(s: Scene, amp: float):
    """A bright bridge with a midbody between the two closest cells (one per image)."""
    c = s.cells
    draw = s.line_canvas()
    if c.n < 2:
        return None
    d = np.hypot(c.cx[:, None] - c.cx[None], c.cy[:, None] - c.cy[None]) + np.eye(c.n) * 1e9
    i, j = np.unravel_index(np.argmin(d), d.shape)
    x0, y0, x1, y1 = c.nx[i], c.ny[i], c.nx[j], c.ny[j]
    draw.line(
        [
            (x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0)),
            (x0 + 0.7 * (x1 - x0), y0 + 0.7 * (y1 - y0)),
        ],
        fill=amp,
        width=max(1, round(1.2 * s.scale)),
    )
    s.dots([(x0 + x1) / 2], [(y0 + y1) / 2], amp * 1.5, "medium")
    return None


def mitotic_spindle(s: Scene, amp: float):
    """A spindle (fan of fibres between two poles) over one cell's nucleus."""
    c = s.cells
    draw = s.line_canvas()
    i = int(s.rng.integers(c.n))
    angle = s.rng.uniform(0, math.pi)
    dx, dy = math.cos(angle), math.sin(angle)
    half = 0.8 * max(c.na[i], c.nb[i])
    ax, ay, bx, by = (
        c.nx[i] - dx * half,
        c.ny[i] - dy * half,
        c.nx[i] + dx * half,
        c.ny[i] + dy * half,
    )
    for off in np.linspace(-0.6, 0.6, 9) * min(c.na[i], c.nb[i]):
        mx, my = c.nx[i] - dy * off, c.ny[i] + dx * off
        draw.line([(ax, ay), (mx, my), (bx, by)], fill=amp, width=max(1, round(0.8 * s.scale)))
    s.dots([ax, bx], [ay, by], amp * 1.3, "small")


def mtoc(s: Scene, amp: float):
    x, y, _ = s.beside_nucleus(1.2)
    s.dots(x, y, amp * 1.4, "medium")
    s.dots(x, y, amp * 0.4, "huge")


def centrosome(s: Scene, amp: float):
    x, y, t = s.beside_nucleus(1.2)
    off = 1.6 * s.scale
    s.dots(
        np.r_[x + off * np.cos(t + 1.2), x - off * np.cos(t + 1.2)],
        np.r_[y + off * np.sin(t + 1.2), y - off * np.sin(t + 1.2)],
        amp * 1.3,
        "tiny",
    )


def lipid_droplets(s: Scene, amp: float):
    """Hollow rings in the cytoplasm."""
    x, y, _ = s.points(s.rng.integers(3, 7, s.cells.n), "cytoplasm", 0.0, 0.9)
    draw = s.line_canvas()
    r = s.rng.uniform(2.2, 3.5, len(x)) * s.scale
    w = max(1, round(0.8 * s.scale))
    for xi, yi, ri in zip(x, y, r, strict=True):
        draw.ellipse([xi - ri, yi - ri, xi + ri, yi + ri], outline=amp * 0.9, width=w)


def plasma_membrane(s: Scene, amp: float):
    return amp * s.ring(s.dcell, 0.94, 0.06)


def cell_junctions(s: Scene, amp: float):
    return amp * 1.2 * s.junction


def mitochondria(s: Scene, amp: float):
    """Many short worm-like segments through the cytoplasm."""
    x, y, _ = s.points(s.rng.integers(25, 45, s.cells.n), "cytoplasm", 0.0, 0.92)
    t = s.rng.uniform(0, 2 * math.pi, len(x))
    length = s.rng.uniform(1.5, 3.0, len(x)) * s.scale
    draw = s.line_canvas()
    w = max(1, round(0.8 * s.scale))
    for xi, yi, ti, li in zip(x, y, t, length, strict=True):
        draw.line(
            [(xi, yi), (xi + li * math.cos(ti), yi + li * math.sin(ti))], fill=amp * 0.8, width=w
        )


def aggresome(s: Scene, amp: float):
    x, y, _ = s.beside_nucleus(1.45)
    s.dots(x, y, amp * 1.2, "huge")


def cytosol(s: Scene, amp: float):
    return amp * 0.8 * s.cytoplasm() * s.texture(10, 0.6)


def cytoplasmic_bodies(s: Scene, amp: float):
    x, y, _ = s.points(s.rng.integers(2, 5, s.cells.n), "cytoplasm", 0.0, 0.9)
    s.dots(x, y, amp * 1.3, "large")


def rods_and_rings(s: Scene, amp: float):
    x, y, _ = s.points(s.rng.integers(1, 3, s.cells.n), "cytoplasm", 0.0, 0.85)
    draw = s.line_canvas()
    w = max(1, round(1.2 * s.scale))
    for k, (xi, yi) in enumerate(zip(x, y, strict=True)):
        if k % 2 == 0:
            t, half = s.rng.uniform(0, math.pi), 3.5 * s.scale
            draw.line(
                [
                    (xi - half * math.cos(t), yi - half * math.sin(t)),
                    (xi + half * math.cos(t), yi + half * math.sin(t)),
                ],
                fill=amp * 1.2,
                width=w,
            )
        else:
            r = 2.5 * s.scale
            draw.ellipse([xi - r, yi - r, xi + r, yi + r], outline=amp * 1.2, width=w)


# Index order matches protloc.classes.CLASS_NAMES.
GREEN_PATTERNS: tuple[Callable[[Scene, float], np.ndarray | None], ...] = (
    nucleoplasm,
    nuclear_membrane,
    nucleoli,
    nucleoli_fibrillar_center,
    nuclear_speckles,
    nuclear_bodies,
    endoplasmic_reticulum,
    golgi,
    peroxisomes,
    endosomes,
    lysosomes,
    intermediate_filaments,
    actin_filaments,
    focal_adhesions,
    microtubules,
    microtubule_ends,
    cytokinetic_bridge,
    mitotic_spindle,
    mtoc,
    centrosome,
    lipid_droplets,
    plasma_membrane,
    cell_junctions,
    mitochondria,
    aggresome,
    cytosol,
    cytoplasmic_bodies,
    rods_and_rings,
)
