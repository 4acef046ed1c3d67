"""Fig. 7: an example MDP of ``DistillGrid-v0``, as a picture and as its map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["layout_figure"]


def layout_figure(out_dir: Path, seed: int) -> dict[str, Any]:
    """Write ``fig7.png`` and ``fig7.txt`` (the map) of layout ``seed``; its layout and counts."""
    import gymnasium as gym

    import gridworld_env
    from gridworld_env.layout import parse_layout
    from gridworld_env.rendering import render_rgb, save_png

    del gridworld_env
    env = gym.make("DistillGrid-v0", layout_seed=seed)
    layout = list(env.unwrapped.layout)  # type: ignore[attr-defined]
    cells, start = parse_layout(layout)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_png(out_dir / "fig7.png", render_rgb(cells, start, None, None, cell_px=32))
    text = "".join(layout)
    counts = {
        "walls": text.count("#"),
        "-1": text.count("-"),
        "+10": text.count("G"),
        "+5": text.count("g"),
        "-5": text.count("x"),
        "-10": text.count("X"),
    }
    body = "\n".join(layout) + "\n"  # exactly the map: gym.make(..., layout=lines) rebuilds it
    from gridworld_env.fileio import atomic_write

    atomic_write(out_dir / "fig7.txt", lambda handle: handle.write(body.encode()))
    return {"layout": layout, "counts": counts}
