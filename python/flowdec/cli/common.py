"""What every verb shares: the global options, the model they select, option types and the
postfilter/NFE/seed options with one rule for all verbs."""

from __future__ import annotations

import argparse
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..codec import Codec

MODEL_ENV = "FLOWDEC_MODEL"
"""Environment variable giving the default for ``--model``."""
DEFAULT_NFE, DEFAULT_SEED = 6, 0
"""Copies of :data:`flowdec.pipeline.postfilter.DEFAULT_NFE` and ``DEFAULT_SEED`` for the help texts
(importing that module would slow ``--help``; a test keeps them equal)."""

_log = logging.getLogger("flowdec")


def load_codec(args: argparse.Namespace) -> Codec:
    """The :class:`~flowdec.codec.Codec` selected by ``--model``, ``--device``, ``--threads``."""
    from ..codec import Codec
    from ..errors import FlowdecError
    from ..model.files import ModelError
    from ..model.sessions import DeviceError

    try:
        return Codec(args.model or os.environ.get(MODEL_ENV) or None, args.device, args.threads)
    except (ModelError, DeviceError) as e:
        raise FlowdecError(str(e)) from None


def progress_arg(args: argparse.Namespace) -> bool | None:
    """``progress=`` for library calls: off with ``--quiet``, else automatic."""
    return False if args.quiet else None


def say(args: argparse.Namespace, line: str) -> None:
    """Print a result line on stdout unless ``--quiet``."""
    if not args.quiet:
        print(line, flush=True)


def add_global_options(p: argparse.ArgumentParser, top: bool) -> None:
    # On verb parsers the defaults are SUPPRESSed so that a global option given before the
    # verb is not overwritten by the verb parser's default.
    def d(value: object) -> object:
        return value if top else argparse.SUPPRESS

    g = p.add_argument_group("global options")
    g.add_argument("--model", metavar="PATH", default=d(None),
                   help=f"model folder or shipped model name (default: ${MODEL_ENV}, else the "
                        "shipped model)")
    g.add_argument("--device", choices=("cpu", "cuda"), default=d("cpu"),
                   help="where the networks run (default: cpu)")
    g.add_argument("--threads", type=positive_int, metavar="N", default=d(None),
                   help="CPU threads for inference (default: up to 4)")
    g.add_argument("--quiet", "-q", action="store_true", default=d(False),
                   help="no progress bar, no summary line (errors and warnings still print)")


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def level_bands_type(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number 0..255, got {s!r}") from None
    if not 0 <= v <= 255:
        raise argparse.ArgumentTypeError(f"expected a whole number 0..255, got {s!r}")
    return v


def bitrate_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-b", "--bitrate", type=float, default=6.0, metavar="KBPS",
                   help="kbit/s per channel: 3, 4.5, 6 or 7.5 (those the model card lists; "
                        "default 6)")
    p.add_argument("--level-bands", type=level_bands_type, default=0, metavar="N",
                   help="also send the input's band balance: gains in N ERB bands per second "
                        "(e.g. 24: +96 bit/s per channel; better ViSQOL on most material, "
                        "see docs/quality.md). Default 0: none")


def postfilter_option(p: argparse.ArgumentParser) -> None:
    """``--postfilter`` / ``--no-postfilter``; neither: on with ``--nfe`` or ``--seed``, else
    as the model card recommends."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--postfilter", dest="postfilter", action="store_true", default=None,
                   help="run the flow-matching postfilter (default: on when --nfe or --seed "
                        "is given, else as the model card recommends from its evaluation; "
                        "the summary says which ran)")
    g.add_argument("--no-postfilter", dest="postfilter", action="store_false",
                   help="plain codec output, without the postfilter")


def nfe_seed_options(p: argparse.ArgumentParser, asks: bool = True,
                     default_nfe: int = DEFAULT_NFE) -> None:
    """``--nfe`` and ``--seed`` (default None: not given; ``default_nfe`` is what the command
    then runs). ``asks``: giving either runs the postfilter unless ``--no-postfilter``
    (:meth:`flowdec.codec.Codec.use_postfilter`)."""
    ask = "; giving it turns the postfilter on unless --no-postfilter" if asks else ""
    p.add_argument("--nfe", type=positive_int, default=None,
                   help=f"postfilter network evaluations, even for the midpoint solver "
                        f"(default {default_nfe}){ask}")
    p.add_argument("--seed", type=int, default=None,
                   help=f"postfilter noise seed (default {DEFAULT_SEED}: the same input "
                        f"gives the same output){ask}")


def solver_options(p: argparse.ArgumentParser, asks: bool = True) -> None:
    """``--nfe``, ``--seed`` and ``--solver`` (default None: not given, midpoint)."""
    nfe_seed_options(p, asks)
    ask = "; giving it turns the postfilter on unless --no-postfilter" if asks else ""
    p.add_argument("--solver", choices=("midpoint", "euler"), default=None,
                   help=f"postfilter ODE solver (default midpoint){ask}")


def postfilter_request(args: argparse.Namespace) -> bool | None:
    """``postfilter=`` for library calls, with ``--solver`` a postfilter setting like ``--nfe``
    and ``--seed``: giving it asks for the postfilter. Settings given with
    ``--no-postfilter`` do nothing, and a note says so."""
    given = [f"--{k}" for k in ("nfe", "seed", "solver") if getattr(args, k, None) is not None]
    if args.postfilter is False and given:
        _log.info("%s %s no effect with --no-postfilter", " ".join(given),
                  "has" if len(given) == 1 else "have")
    if args.postfilter is None and getattr(args, "solver", None) is not None:
        return True
    return bool(args.postfilter) if args.postfilter is not None else None


def decode_options(p: argparse.ArgumentParser) -> None:
    solver_options(p)
    postfilter_option(p)


def chunk_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk-seconds", type=positive_float, default=10.0, metavar="S",
                   help="processing chunk in seconds; bounds memory (default 10)")
