"""How close the envelope flow's samples come to the clean band levels (issue 18), on the
pairs its run held out (64 crops of 240 frames at 0 dBFS peak): mean absolute level error in
dB against the clean levels (all bands and frames, and where the clean level is above
−50 dB), the same for the codec output, how much the levels move from frame to frame
relative to the clean ones, and the mean signed error, per solver, NFE and temperature.
NFE 20 against NFE 6 tells solver error from model error; temperature 0 is near the
network's mean prediction. Prints a table, writes JSON (bench_out/envelope_flow_levels.json).

    python benchmarks/bench_envelope_flow_levels.py --run runs/envelope_flow_c96_la8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from eval_envelope_flow import load_net
from flowdec.train.envelope_flow import DB_PER_UNIT, sample
from flowdec.train.train_envelope_flow import EnvelopeFlowTrain, LevelCrops
from results import save

SETTINGS = [(6, "midpoint", 1.0), (20, "midpoint", 1.0), (6, "euler", 1.0),
            (6, "midpoint", 0.5), (6, "midpoint", 0.0)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--levels", type=Path, help="band-power cache (default RUN/levels or the "
                   "--levels the run was trained with)")
    p.add_argument("--out", type=Path, default=Path("bench_out/envelope_flow_levels.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    net, sigma, step = load_net(args.run)
    levels = args.levels or args.run / "levels"
    px = np.load(levels / "px.npy", mmap_mode="r")
    py = np.load(levels / "py.npy", mmap_mode="r")
    n_train = px.shape[0] - EnvelopeFlowTrain().valid_pairs
    vx, vy = LevelCrops(px[n_train:], py[n_train:], 240, 0.0, 4321).batch(64)
    loud = vx > -50.0 / DB_PER_UNIT
    dx = (vx[..., 1:] - vx[..., :-1]).abs().mean()

    def row(s: torch.Tensor) -> dict[str, float]:
        return {"err_db": float((s - vx).abs().mean() * DB_PER_UNIT),
                "err_db_loud": float((s - vx).abs()[loud].mean() * DB_PER_UNIT),
                "motion": float((s[..., 1:] - s[..., :-1]).abs().mean() / dx),
                "bias_db": float((s - vx).mean() * DB_PER_UNIT)}

    rows = {"codec output": row(vy)}
    for nfe, solver, temp in SETTINGS:
        gen = torch.Generator().manual_seed(0)
        rows[f"{solver} NFE {nfe}, temperature {temp:g}"] = row(
            sample(net, vy, sigma, nfe, solver, temp, gen))
    print(f"{args.run} step {step}")
    print("| levels | error dB | error dB (> −50 dB) | motion / clean | mean error dB |")
    print("|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['err_db']:.2f} | {r['err_db_loud']:.2f} | {r['motion']:.2f} | "
              f"{r['bias_db']:+.2f} |")
    save(args.out, {"run": str(args.run), "step": step, "rows": rows})


if __name__ == "__main__":
    main()
