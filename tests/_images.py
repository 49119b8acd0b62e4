"""A check that a written figure is a real plot, not just a file of some size."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image


def assert_is_a_plot(path: Path, *, min_width: int = 400, min_height: int = 250) -> None:
    """``path`` decodes as a PNG of at least this size with something drawn on it (more than 2 %
    of its pixels differ from the background: a blank canvas has none, axes alone ~2.5 %)."""
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height, image.shape
    rgb = image[..., :3].reshape(-1, 3)
    background = rgb[0]
    drawn = (abs(rgb - background) > 0.05).any(axis=1).mean()
    assert drawn > 0.02, f"{path.name}: only {drawn:.1%} of the pixels are drawn"
