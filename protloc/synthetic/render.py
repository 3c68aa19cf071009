"""Render one synthetic RGBY sample for a label set."""

from __future__ import annotations

import numpy as np
from PIL import Image

from protloc.synthetic.patterns import GREEN_PATTERNS, er_stain, microtubule_stain, nucleus_stain
from protloc.synthetic.scene import Scene, random_cells

# Scenes are drawn at most at this resolution and upsampled: cell structures are a few pixels
# wide at 128 px already, and drawing at 512 would cost 4x for detail the model sees resized anyway.
MAX_DRAW_RES = 256


def render_sample(labels: list[int], size: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 (4, size, size) image in R, G, B, Y order whose green channel shows ``labels``."""
    res = min(size, MAX_DRAW_RES)
    scene = Scene(res, random_cells(rng, res), rng)

    green = np.zeros((res, res), np.float32)
    for label in labels:
        dense = GREEN_PATTERNS[label](scene, float(rng.uniform(0.55, 1.0)))
        if dense is not None:
            green += dense
    green += scene.composite_points()
    # Staining strength varies per image, and some nonspecific signal sits in every cell.
    green = green * rng.uniform(0.5, 1.0) + rng.uniform(0.0, 0.06) * scene.cell()

    red = microtubule_stain(scene, float(rng.uniform(0.5, 0.9)))
    red += scene.composite_points()
    blue = nucleus_stain(scene, float(rng.uniform(0.6, 1.0)))
    yellow = er_stain(scene, float(rng.uniform(0.45, 0.9)))

    brightness = rng.uniform(0.6, 1.0, scene.cells.n).astype(np.float32)
    cell_gain = np.where(scene.owner >= 0, brightness[np.maximum(scene.owner, 0)], 1.0)
    stack = np.stack([red, green, blue, yellow]) * cell_gain
    # Shot noise: proportional to sqrt(signal), so the background stays at exactly 0 as in HPA.
    stack += (
        rng.standard_normal(stack.shape, dtype=np.float32) * 0.05 * np.sqrt(np.maximum(stack, 0))
    )
    out = np.clip(stack * 255.0, 0, 255).astype(np.uint8)
    if size != res:
        out = np.stack(
            [np.asarray(Image.fromarray(ch).resize((size, size), Image.BILINEAR)) for ch in out]
        )
    return out
