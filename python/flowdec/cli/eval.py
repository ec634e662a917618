"""The ``flowdec eval`` verb: a thin wrapper over :func:`flowdec.evaluation.runner.run_eval`.

    flowdec eval REF_DIR [-b 3 4.5 6 7.5] [--nfe 2 6 10] [--baselines opus] [-o OUT_DIR]
                 [--seed 0] [--ablations] [--metrics si_sdr mel_distance ...] [--no-report]
                 [--level-bands 24] [--domain speech]
"""

from __future__ import annotations

import argparse
import sys

from .common import load_codec


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..evaluation.metrics import ALL_METRICS

    p = subparsers.add_parser(
        "eval", help="score the codec against references and Opus; write tables and a report",
        description="Code every clip in REF_DIR through the codec without (setting ndac) "
                    "and with the postfilter (flowdec-nfeN, per NFE) and through Opus at the "
                    "same and twice the bitrate; write clips.csv, summary.json, "
                    "results_<domain>.md and an HTML listening report into OUT_DIR. A clip's "
                    "domain comes from its file name: music_*, speech_*, sound_*; other "
                    "names get --domain. PESQ and STOI score speech clips only.")
    p.add_argument("ref_dir", metavar="REF_DIR", help="folder of reference clips")
    p.add_argument("-b", "--bitrates", type=float, nargs="+", default=[3.0, 4.5, 6.0, 7.5],
                   metavar="KBPS", help="kbit/s per channel (default 3 4.5 6 7.5)")
    p.add_argument("--nfe", type=int, nargs="*", default=[2, 4, 6, 10],
                   help="postfilter evaluations to test (default 2 4 6 10; none: --nfe, the "
                        "codec path only)")
    p.add_argument("--baselines", nargs="*", default=["opus"], choices=["opus"],
                   help="baseline codecs (default opus; none: --baselines)")
    p.add_argument("-o", "--out", default="eval_out", metavar="OUT_DIR",
                   help="output folder (default eval_out)")
    p.add_argument("--seed", type=int, default=0, help="postfilter noise seed (default 0)")
    p.add_argument("--ablations", action="store_true",
                   help="also NFE 6 with the Euler solver and with a global sigma_y")
    p.add_argument("--metrics", nargs="+", default=list(ALL_METRICS), choices=ALL_METRICS,
                   help="metrics to compute (default: all installed)")
    p.add_argument("--opus-mode", choices=["cbr", "vbr"], default="cbr",
                   help="opusenc rate control (default cbr: --hard-cbr)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="use only the first S seconds of each clip")
    p.add_argument("--domain", choices=["music", "speech", "sound", "other"], default="other",
                   help="domain of clips whose name has no music_/speech_/sound_ prefix "
                        "(default other)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report and plots")
    p.add_argument("--level-bands", type=int, nargs="*", default=[], metavar="N",
                   help="also code with N band gains per second (e.g. 24): settings "
                        "ndac-bandsN and flowdec-nfeK-bandsN")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.runner import EvalConfig, run_eval

    cfg = EvalConfig(bitrates=tuple(args.bitrates), nfes=tuple(args.nfe),
                     baselines=tuple(args.baselines), ablations=args.ablations,
                     seed=args.seed, metrics=tuple(args.metrics), opus_mode=args.opus_mode,
                     max_seconds=args.max_seconds, level_bands=tuple(args.level_bands),
                     domain=args.domain)
    from ..evaluation.opus import OpusNotFound

    codec = load_codec(args)
    quiet = bool(getattr(args, "quiet", False))
    try:
        summary = run_eval(codec, args.ref_dir, args.out, cfg,
                           progress=None if not quiet else False,
                           log=lambda s: print(f"flowdec: note: {s}"))
    except (OpusNotFound, ValueError) as e:
        print(f"flowdec: error: {e}", file=sys.stderr)
        return 1
    if not args.no_report:
        from ..evaluation.report import write_report

        index = write_report(args.out)
        print(f"report: {index}")
    if not quiet:
        from ..evaluation.report import SETTINGS_NOTE
        from ..evaluation.runner import markdown_table

        print(markdown_table(summary, "all"), end="")
        print(SETTINGS_NOTE)
    print(f"wrote {args.out}/clips.csv, summary.json, results_*.md")
    return 0
