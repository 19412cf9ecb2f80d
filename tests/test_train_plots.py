"""The learned-positions plot draws `dcls_positions` in its own frame: the whole grid visible."""

from __future__ import annotations

import numpy as np
import torch

from audiosweep.models import create_model, dcls_positions
from audiosweep.train.plots import dcls_positions_figure, dcls_positions_plot

SIZE = 23


def _drawn(ax) -> tuple[np.ndarray, np.ndarray]:
    """(init, learned) scatter points of one panel."""
    init, learned = ax.collections
    return np.asarray(init.get_offsets()), np.asarray(learned.get_offsets())


def _inside(points: np.ndarray, ax) -> bool:
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    return bool(((points[:, 0] > x0) & (points[:, 0] < x1)).all()) and bool(
        ((points[:, 1] > y0) & (points[:, 1] < y1)).all()
    )


def test_corners_and_centre_of_the_grid_are_drawn_where_they_are() -> None:
    # (time, mel) grid coordinates: the four corners and the centre.
    corners = [(0, 0), (0, SIZE - 1), (SIZE - 1, 0), (SIZE - 1, SIZE - 1), (SIZE // 2, SIZE // 2)]
    positions = torch.tensor(corners, dtype=torch.float32).T.reshape(2, 1, len(corners))
    centre = torch.full_like(positions, SIZE // 2)

    fig = dcls_positions_figure({"stages.0": centre}, {"stages.0": positions}, SIZE)

    (ax,) = fig.axes
    init, learned = _drawn(ax)
    np.testing.assert_array_equal(learned, np.array(corners, dtype=np.float32))
    np.testing.assert_array_equal(init, np.full((len(corners), 2), SIZE // 2))
    assert _inside(learned, ax)
    # The axes show the grid and little else: each cell centred on its index.
    assert ax.get_xlim() == ax.get_ylim() == (-0.5, SIZE - 0.5)


def test_positions_of_a_model_at_the_grid_edges_stay_on_the_axes(tmp_path) -> None:
    model = create_model("convnext_atto", "dcls_gauss", num_classes=3)
    start = dcls_positions(model)
    with torch.no_grad():  # every element of stage 0 at the right/top edge: offset +11
        model.stages[0].blocks[0].conv_dw.P.fill_(SIZE // 2)
    end = dcls_positions(model)

    fig = dcls_positions_figure(start, end, end.dilated_kernel_size)

    assert len(fig.axes) == len(end) == 4
    first = fig.axes[0]
    _, learned = _drawn(first)
    assert (learned == SIZE - 1).all()
    assert _inside(learned, first)
    for ax in fig.axes:
        init, learned = _drawn(ax)
        assert _inside(init, ax) and _inside(learned, ax)
    assert dcls_positions_plot(start, end, SIZE, tmp_path / "p.png").stat().st_size > 0


def test_one_dimensional_positions_are_drawn_per_channel_on_the_grid() -> None:
    model = create_model("sp4asc", "dcls_gauss", n_mels=64, dilated_kernel_size=7, kernel_count=3)
    start = dcls_positions(model)
    end = {k: v.clone() for k, v in start.items()}
    first = next(iter(end))
    end[first][0, :, 0], end[first][0, :, 2] = 0.0, 6.0  # grid ends of a 7-wide kernel

    fig = dcls_positions_figure(start, end, 7)

    ax = fig.axes[0]
    _, learned = _drawn(ax)
    channels = end[first].shape[1]
    assert learned.shape == (channels * 3, 2)
    assert set(learned[::3, 0]) == {0.0} and set(learned[2::3, 0]) == {6.0}
    np.testing.assert_array_equal(learned[::3, 1], np.arange(channels))
    assert _inside(learned, ax)
    assert ax.get_xlim() == (-0.5, 6.5)
