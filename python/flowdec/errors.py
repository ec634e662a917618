"""The errors flowdec reports to its users: one line that names the file and the problem."""

from __future__ import annotations


class FlowdecError(Exception):
    """A problem the user can fix (missing or unreadable file, bad option, damaged stream).

    ``str(error)`` is one line naming the file and the problem.
    """


class FlowdecWarning(UserWarning):
    """Something is probably wrong with the input (e.g. it is clipped) but it was processed."""


def one_line(e: BaseException) -> str:
    """``e`` as one line of text (pedalboard's prefixes dropped)."""
    s = " ".join(str(e).split())
    for prefix in ("Failed to open audio file: ",):
        s = s.removeprefix(prefix)
    return s or type(e).__name__
