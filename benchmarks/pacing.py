"""Feeding a :class:`flowdec.Stream` the way an audio callback does: one host block at a
time, paced to the wall clock, timing every ``process`` call."""

from __future__ import annotations

import time

import numpy as np

from flowdec.stream import Stream


def process_in_real_time(s: Stream, x: np.ndarray, block: int, seconds: float,
                         rate: int) -> np.ndarray:
    """Push ``seconds`` of ``x`` (looped) through the prepared ``s`` in blocks of ``block``
    at ``rate``, sleeping so that block k is handed over at k·block/rate; returns each
    ``process`` call's duration in seconds."""
    out = np.empty((x.shape[0], block), np.float32)
    times = []
    total = int(seconds * rate) // block * block
    t0 = time.perf_counter()
    done = 0
    while done < total:
        i = done % (x.shape[1] - block)
        c0 = time.perf_counter()
        s.process(x[:, i : i + block], out)
        times.append(time.perf_counter() - c0)
        done += block
        wait = t0 + done / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    return np.asarray(times)
