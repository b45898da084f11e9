"""Rules 6-7 of ``vae_core.windows``: one entity's regular time grid, batch after batch.

The grid steps are the multiples of the frequency from the Unix epoch; each step holds the
channel values of the last kept row at or before it, never of a row older than the gap
tolerance. ``TimeGrid.entity`` extends an entity's grid with the rows of one batch,
starting from what earlier batches left (``GridTail``), and finds the step, and with it
the window, of each new row. Everything is in int64 nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GridTail:
    """What an entity's grid needs from earlier batches (see rule 6)."""

    steps: np.ndarray  # int64 ns of the last ``length`` grid steps, oldest first
    values: np.ndarray  # (len(steps), channels)
    pos: np.ndarray  # position of each step in its segment
    initial: np.ndarray  # whether each step's segment is the entity's first
    #: Whether the newest step was filled from the segment (rule 4) of the newest row.
    same_segment: bool


@dataclass(frozen=True)
class EntityGrid:
    """One entity's grid in one batch, and where the batch's new rows land on it.

    Row positions count the entity's rows in the batch (carried ones included) from 0.
    """

    values: np.ndarray  # (steps, channels): the carried steps, then this batch's
    ends: np.ndarray  # per scored row, the index in ``values`` of its window's last step
    scored: np.ndarray  # positions of the new rows with a full window, in order
    warming_up: np.ndarray  # positions of new rows before the entity's first full window
    after_gap: np.ndarray  # positions of the other new rows without a full window
    tail: GridTail | None  # what the next batch needs; None when the grid has no step


@dataclass(frozen=True)
class _Joined:
    """The carried steps and this batch's steps, one array per field, oldest first."""

    steps: np.ndarray
    values: np.ndarray
    pos: np.ndarray
    initial: np.ndarray


@dataclass(frozen=True)
class TimeGrid:
    """The grid of a window spec: step and gap tolerance in ns, window length, stride."""

    step: int
    tolerance: int | None
    length: int
    stride: int

    def entity(
        self,
        t: np.ndarray,
        segment: np.ndarray,
        values: np.ndarray,
        is_new: np.ndarray,
        tail: GridTail | None,
    ) -> EntityGrid:
        """The grid of one entity's kept rows: times ``t`` (ns, sorted), their segment
        numbers, channel values and whether each row is new in this batch."""
        owner, steps = self._fill(t, tail)
        step_segment = segment[owner]
        pos, initial = self._positions(steps, step_segment, segment, tail)
        joined = _join(tail, steps, values, owner, pos, initial)
        new_rows = np.flatnonzero(is_new)
        at = t[new_rows] // self.step * self.step
        index, found, row_pos, row_initial = _steps_at(joined, at)
        length = self.length
        full = found & (row_pos >= length - 1)
        if self.stride > 1:
            full &= (row_pos - (length - 1)) % self.stride == 0
        short = ~found | (row_pos < length - 1)
        # A row before the entity's first grid step warms up; one in the stale part of
        # a gap (no step at its time) comes after a gap.
        first_step = steps[0] if len(steps) else np.iinfo(np.int64).max
        warming = np.where(found, row_initial, (tail is None) & (at < first_step))
        return EntityGrid(
            values=joined.values,
            ends=index[full],
            scored=new_rows[full],
            warming_up=new_rows[short & warming],
            after_gap=new_rows[short & ~warming],
            tail=self._next_tail(joined, steps, step_segment, segment, tail),
        )

    def _fill(self, t: np.ndarray, tail: GridTail | None) -> tuple[np.ndarray, np.ndarray]:
        """The new grid steps (ns) and, for each, the row whose values it holds."""
        step = self.step
        # Steps each row fills: from its own (or the first unfilled) grid point up to the
        # next row, and not further than the gap tolerance; the newest row fills only up
        # to itself, later steps wait for the next row or batch.
        lower = -(-t // step) * step
        if tail is not None:
            lower = np.maximum(lower, tail.steps[-1] + step)
        upper = np.r_[t[1:] - 1, t[-1]]
        if self.tolerance is not None:
            upper = np.minimum(upper, t + self.tolerance)
        upper = upper // step * step
        counts = np.maximum((upper - lower) // step + 1, 0)
        owner = np.repeat(np.arange(len(t)), counts)
        steps = lower[owner] + step * (
            np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        return owner, steps

    def _positions(
        self,
        steps: np.ndarray,
        step_segment: np.ndarray,
        segment: np.ndarray,
        tail: GridTail | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each new step's position in its segment, and whether that is the entity's first."""
        breaks = np.ones(len(steps), dtype=bool)
        breaks[1:] = (np.diff(steps) != self.step) | (step_segment[1:] != step_segment[:-1])
        if len(steps) and tail is not None:
            breaks[0] = not (
                tail.same_segment
                and steps[0] == tail.steps[-1] + self.step
                and step_segment[0] == segment[0]
            )
        # Runs of steps within this batch; the first continues the carried segment
        # unless breaks[0] says otherwise.
        run_start = breaks.copy()
        run_start[:1] = True
        starts = np.flatnonzero(run_start)
        which = np.cumsum(run_start) - 1
        base = np.zeros(len(starts), dtype=np.int64)
        first_initial = tail is None
        if len(steps) and tail is not None and not breaks[0]:
            base[0] = tail.pos[-1] + 1
            first_initial = bool(tail.initial[-1])
        pos = base[which] + np.arange(len(steps)) - starts[which]
        initial = (which == 0) & first_initial
        return pos, initial

    def _next_tail(
        self,
        joined: _Joined,
        steps: np.ndarray,
        step_segment: np.ndarray,
        segment: np.ndarray,
        tail: GridTail | None,
    ) -> GridTail | None:
        """The last ``length`` steps for the next batch; None when there are none."""
        if not len(joined.steps):
            return None
        keep = slice(-self.length, None)
        same = (
            step_segment[-1] == segment[-1]
            if len(steps)
            else tail is not None and tail.same_segment and segment[-1] == segment[0]
        )
        return GridTail(
            joined.steps[keep],
            joined.values[keep],
            joined.pos[keep],
            joined.initial[keep],
            bool(same),
        )


def _join(
    tail: GridTail | None,
    steps: np.ndarray,
    values: np.ndarray,
    owner: np.ndarray,
    pos: np.ndarray,
    initial: np.ndarray,
) -> _Joined:
    """The carried steps followed by the new ones, whose values are their rows' values."""
    old = tail.steps if tail is not None else np.zeros(0, dtype=np.int64)
    return _Joined(
        steps=np.r_[old, steps],
        values=np.concatenate([tail.values if tail is not None else values[:0], values[owner]]),
        pos=np.r_[tail.pos if tail is not None else np.zeros(0, np.int64), pos],
        initial=np.r_[tail.initial if tail is not None else np.zeros(0, bool), initial],
    )


def _steps_at(
    joined: _Joined, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each time ``at`` (on the grid): index of its step, whether there is one, and the
    step's position in its segment (-1 without one) and initial flag."""
    all_steps = joined.steps
    index = np.searchsorted(all_steps, at)
    found = index < len(all_steps)
    found[found] = all_steps[index[found]] == at[found]
    index = np.where(found, index, 0)
    if len(all_steps):
        row_pos = np.where(found, joined.pos[index], -1)
        row_initial = joined.initial[index]
    else:
        row_pos = np.full(len(at), -1)
        row_initial = np.zeros(len(at), dtype=bool)
    return index, found, row_pos, row_initial
