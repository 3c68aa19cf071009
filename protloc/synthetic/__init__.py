"""Synthetic HPA-format data: real label statistics, cell-like images, the Kaggle layout."""

from protloc.synthetic.dataset import SyntheticSpec, generate
from protloc.synthetic.render import render_sample

__all__ = ["SyntheticSpec", "generate", "render_sample"]
