#!/usr/bin/env python3
"""Scheduling error of the event agents: planned vs applied, on real containers.

    python benchmarks/events.py [--runs 3] [--seconds 12] [--json FILE]

Each run brings up a two-node lab (two 20 Mbit/s links), runs an MPTCP flow over both (the
load the agents must keep time under) and schedules, per run:

* a rate change on each end of link ``a`` every 0.1 s (alternating 5 and 20 Mbit/s), and
* a Mahimahi trace on link ``b`` (topologies/traces/wifi.mahimahi: a step every 0.1 s), and
* a blackhole on/off of link ``b`` every 2 s,

then reads every node's events.log: for each timed step, *start lag* = when the agent
started the command minus when it was planned (the scheduling error proper), and *done
lag* = when the command returned minus the plan (that adds the ``tc``/``ip`` process and
the kernel's rtnl lock, which every lab on the host shares). Prints the median, p95 and max
of both per run and over all runs; the target (issue 9) is a median start lag <= 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mptcpdock.api import Lab  # noqa: E402
from mptcpdock.report.events import parse_events_log  # noqa: E402


def build(name: str, seconds: float) -> Lab:
    lab = Lab(name)
    h1, h2 = lab.host("h1"), lab.host("h2")
    a = lab.link(h1, h2, rate="20mbit", name="a")
    b = lab.link(h1, h2, rate="20mbit", name="b", egress={h1: {"trace": str(ROOT / "topologies/traces/wifi.mahimahi")}})
    h1.mptcp(subflows=2, add_addr_accepted=2)
    h2.mptcp(subflows=2, add_addr_accepted=2, endpoints={"eth1": ["signal"]})
    lab.flow(h1, h2, duration=seconds)
    until = seconds - 0.5
    lab.event(0.1, every=0.2, until=until, link=a, set={"rate": "5mbit"}, label="a 5 Mbit/s")
    lab.event(0.2, every=0.2, until=until, link=a, set={"rate": "20mbit"}, label="a 20 Mbit/s")
    lab.event(1.0, every=2.0, until=until, link=b, blackhole=True, label="b blackholed")
    lab.event(1.5, every=2.0, until=until, link=b, blackhole=False, label="b back")
    return lab


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def figures(values: list[float]) -> dict[str, float]:
    return {"count": len(values), "median_ms": round(statistics.median(values), 3),
            "p95_ms": round(percentile(values, 0.95), 3), "max_ms": round(max(values), 3)}


def one_run(index: int, seconds: float, results: Path) -> dict:
    lab = build(f"bench-ev{index}", seconds)
    lab.down()
    with lab.running(allow_no_impairments=True):
        started = time.perf_counter()
        result = lab.run(results_root=results, plots=False)
        wall = time.perf_counter() - started
    steps = []
    for log in sorted((result.results_dir / "nodes").glob("*/events.log")):
        steps += [s for s in parse_events_log(log.read_text(), log.parent.name) if s.planned is not None
                  and s.id != "snap"]
    failed = [s for s in steps if s.rc != 0]
    return {"run": index, "results": str(result.results_dir), "wall_s": round(wall, 1), "steps": len(steps),
            "failed": len(failed), "start_lag": figures([s.start_lag_ms for s in steps]),
            "done_lag": figures([s.done_lag_ms for s in steps]),
            "events_start_lag": figures([s.start_lag_ms for s in steps if s.id.startswith("e")]),
            "trace_start_lag": figures([s.start_lag_ms for s in steps if s.id == "trace"]),
            "_start": [s.start_lag_ms for s in steps], "_done": [s.done_lag_ms for s in steps]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("MPTCPDOCK_STATE_DIR", tempfile.mkdtemp(prefix="mptcpdock-bench-"))
    results = Path(tempfile.mkdtemp(prefix="mptcpdock-bench-results-"))
    runs = [one_run(i, args.seconds, results) for i in range(1, args.runs + 1)]
    every_start = [v for run in runs for v in run.pop("_start")]
    every_done = [v for run in runs for v in run.pop("_done")]
    total = {"runs": runs, "all": {"start_lag": figures(every_start), "done_lag": figures(every_done)},
             "target": "median start lag <= 10 ms"}
    for run in runs:
        print(f"run {run['run']}: {run['steps']} steps ({run['failed']} failed) in {run['wall_s']} s; start lag "
              f"median {run['start_lag']['median_ms']:.2f} ms, p95 {run['start_lag']['p95_ms']:.2f}, max "
              f"{run['start_lag']['max_ms']:.2f}; done lag median {run['done_lag']['median_ms']:.2f} ms, p95 "
              f"{run['done_lag']['p95_ms']:.2f}, max {run['done_lag']['max_ms']:.2f}")
    start, done = total["all"]["start_lag"], total["all"]["done_lag"]
    print(f"all {start['count']} steps: start lag median {start['median_ms']:.2f} ms, p95 {start['p95_ms']:.2f} ms, "
          f"max {start['max_ms']:.2f} ms; done lag median {done['median_ms']:.2f} ms, p95 {done['p95_ms']:.2f} ms, "
          f"max {done['max_ms']:.2f} ms (target: {total['target']}: "
          f"{'met' if start['median_ms'] <= 10 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps(total, indent=2) + "\n")


if __name__ == "__main__":
    main()
