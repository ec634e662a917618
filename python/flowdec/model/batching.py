"""Batching of concurrent network calls from several streams into one inference call.

The plugin backend serves many plugin instances, each on its own thread with its own
:class:`flowdec.Stream`. Their encoder, decoder and postfilter calls have the same shapes
whenever their settings match, so they can run as one batch: one ONNX Runtime call instead of
one per instance (on a GPU the difference is large; on a 2-core CPU it is small, see
``benchmarks/bench_plugin.py``).

A thread that processes audio registers as a *participant* for as long as it may call a
network. A call waits until every participant is itself waiting in a call (or
``max_wait_s`` has passed), then the first waiting call becomes the leader of every waiting
call with the same session, input shapes (beyond the batch axis) and unbatched inputs (the
postfilter's ``t``): it concatenates them along the batch axis, runs the session once, and
hands each caller its rows. A call from a thread that is not a participant never waits for
anybody. Results are exactly those of separate calls up to the floating-point summation order
of the batched kernels.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


class _Call:
    __slots__ = ("key", "feeds", "rows", "taken", "done", "result", "error")

    def __init__(self, key: tuple[Any, ...], feeds: dict[str, np.ndarray], rows: int) -> None:
        self.key = key
        self.feeds = feeds
        self.rows = rows
        self.taken = False
        self.done = False
        self.result: list[np.ndarray] | None = None
        self.error: BaseException | None = None


class Batcher:
    """Coordinates the calls of all participating threads to the sessions it wraps."""

    def __init__(self, max_wait_s: float = 0.02) -> None:
        self.max_wait_s = max_wait_s
        self._cond = threading.Condition()
        self._pending: list[_Call] = []
        self._participants = 0
        self._waiting = 0  # participants inside a call
        self._local = threading.local()
        self.calls = 0  # requests served
        self.runs = 0  # inference calls made for them

    @contextmanager
    def participant(self) -> Iterator[None]:
        """Mark the current thread as one that will call the wrapped sessions soon."""
        with self._cond:
            self._participants += 1
            self._local.participant = getattr(self._local, "participant", 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._participants -= 1
                self._local.participant -= 1
                self._cond.notify_all()

    def wrap(self, session: Any) -> BatchingSession:
        return BatchingSession(self, session)

    def _run(self, session: BatchingSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        rows = next(v.shape[0] for k, v in feeds.items() if k in session.batched)
        key = (id(session),) + tuple(
            (k, v.dtype.str, v.shape[1:]) if k in session.batched else (k, v.dtype.str, v.shape,
                                                                        v.tobytes())
            for k, v in sorted(feeds.items()))
        me = _Call(key, feeds, rows)
        participant = getattr(self._local, "participant", 0) > 0
        with self._cond:
            self._pending.append(me)
            if participant:
                self._waiting += 1
            self._cond.notify_all()
            deadline = time.monotonic() + self.max_wait_s
            try:
                while True:
                    if me.done:
                        break
                    if not me.taken and (not participant or self._waiting >= self._participants
                                         or time.monotonic() >= deadline):
                        group = [c for c in self._pending if c.key == key and not c.taken]
                        for c in group:
                            c.taken = True
                        self._pending = [c for c in self._pending if not c.taken]
                        break
                    self._cond.wait(max(0.0, deadline - time.monotonic()) if not me.taken
                                    else None)
            finally:
                if participant:
                    self._waiting -= 1
        if me.done:
            if me.error is not None:
                raise me.error
            assert me.result is not None
            return me.result
        # the leader: one inference call for the whole group
        try:
            if len(group) == 1:
                outs = session.session.run(None, feeds)
                results = [list(outs)]
            else:
                joined = {k: (np.concatenate([c.feeds[k] for c in group]) if k in session.batched
                              else v) for k, v in feeds.items()}
                outs = session.session.run(None, joined)
                bounds = np.cumsum([0] + [c.rows for c in group])
                results = [[o[a:b] for o in outs] for a, b in zip(bounds[:-1], bounds[1:],
                                                                 strict=True)]
            error: BaseException | None = None
        except BaseException as e:  # every caller of the group sees the failure
            results, error = [], e
        with self._cond:
            self.calls += len(group)
            self.runs += 1
            for i, c in enumerate(group):
                c.error = error
                c.result = results[i] if error is None else None
                c.done = True
            self._cond.notify_all()
        if error is not None:
            raise error
        assert me.result is not None
        return me.result


class BatchingSession:
    """An ONNX Runtime session whose ``run`` joins the batches of concurrent callers."""

    def __init__(self, batcher: Batcher, session: Any) -> None:
        self.batcher = batcher
        self.session = session
        # inputs whose first axis is symbolic (the batch) are joined; the others must match
        self.batched = {i.name for i in session.get_inputs()
                        if i.shape and not isinstance(i.shape[0], int)}
        if not self.batched:
            raise ValueError("the session has no input with a batch axis")

    def __getattr__(self, name: str) -> Any:  # get_inputs, io_binding, ...: the session's own
        return getattr(self.session, name)

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if output_names is not None:
            raise ValueError("BatchingSession.run returns every output (output_names=None)")
        return self.batcher._run(self, feeds)
