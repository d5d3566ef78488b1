"""netem's wider model, the AQM leaves and a delay sweep on a netem kernel (the VM-host tier,
``pytest -m vmhost``; see tests/vmhost_support.py). The side this machine's kernel can check
(what it lacks is one line naming the kernel and the qdisc) is tests/test_netem_extras_docker.py.

* Every netem extra (duplicate, corrupt, reorder with its correlation, a pareto delay
  distribution, a Gilbert-Elliott loss model) and every AQM leaf the kernel has (fq_codel,
  codel, pie, cake, red, fq) is in ``tc -s qdisc`` inside the node as planned, and traffic
  went through each; two of them are measured: the duplicates ping sees against 2% (binomial
  band), and the pareto jitter's right tail (a normal's would be symmetric).
* ``mptcpdock sweep`` of ex.1 over a delay (5 ms, 50 ms on r2-h2-2, 3 runs each) keeps the
  lab and changes netem in place, and sweep.json's figures are the runs' own; the swept
  path's round trip grows by about the 90 ms the delay adds.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

vmhost_support = pytest.importorskip("vmhost_support", reason="the VM tier's support (tests/vmhost_support.py) "
                                                              "is not in this tree")
from vmhost_support import TOPOLOGIES, Cli, Recorder, binomial_band, parse_ping, write_topology  # noqa: E402

pytest_plugins = ["vmhost_support"]
pytestmark = [pytest.mark.vmhost, pytest.mark.slow]

AQM = ("fq_codel", "codel", "pie", "cake", "red", "fq")
DUPLICATE = 0.02
PINGS = 1500
EXTRAS = {  # interface: (h1's egress, what `tc qdisc show` prints for it)
    "nx1": ({"delay": "10ms", "jitter": "4ms", "distribution": "pareto", "duplicate": "2%", "corrupt": "0.5%"},
            ["netem", "delay 10ms  4ms", "duplicate 2%", "corrupt 0.5%"]),
    "nx2": ({"delay": "10ms", "reorder": "25%", "reorder_correlation": "50%",
             "loss": {"model": "gemodel", "p": "1%", "r": "50%"}},
            ["netem", "delay 10ms", "reorder 25% 50%", "loss gemodel p 1% r 50%"]),
}


def extras_lab(name: str) -> dict:
    """h1 and h2 joined by one 10 Mbit link per netem extra set (h1's egress) and per AQM
    leaf (h2's egress; the first two links carry both an extra set and an AQM)."""
    links = []
    for index, kind in enumerate(AQM, start=1):
        interface = f"nx{index}"
        egress = {"h2": {"qdisc": kind}}
        if interface in EXTRAS:
            egress["h1"] = EXTRAS[interface][0]
        links.append({"endpoints": [{"node": "h1", "interface": interface, "address": f"10.71.{index}.1"},
                                    {"node": "h2", "interface": interface, "address": f"10.71.{index}.2"}],
                      "subnet": f"10.71.{index}.0/24", "rate": "10mbit", "egress": egress})
    return {"name": name, "nodes": {"h1": {}, "h2": {}}, "links": links}


def qdiscs(cli: Cli, lab: str, node: str, interface: str) -> str:
    return cli.exec(lab, node, "tc", "-s", "qdisc", "show", "dev", interface)


def leaf_sent_bytes(text: str, kind: str) -> int:
    """The ``Sent N bytes`` of the ``kind`` qdisc in ``tc -s qdisc show`` output."""
    block = re.search(rf"qdisc {kind} \S+ .*?Sent (\d+) bytes", text, re.S)
    assert block, f"no {kind} qdisc with counters in:\n{text}"
    return int(block[1])


def test_netem_extras_and_aqm_leaves_are_in_the_kernel_as_planned(cli: Cli, figures: Recorder, tmp_path: Path):
    doctor = json.loads(cli.run("doctor", "--json", check=False).stdout)
    missing = [kind for kind in AQM if not doctor["kernel"]["aqm"].get(kind)]
    assert not missing, f"the VM's kernel {doctor['kernel']['kernel']} lacks {missing}: the recipe's cloud kernel has them all"
    name = "t10vm-extras"
    path = write_topology(tmp_path / f"{name}.yaml", extras_lab(name))
    with cli.lab(path, name):
        dup_run = cli.run("exec", "--lab", name, "h1", "--", "ping", "-n", "-c", str(PINGS), "-i", "0.01", "-W", "2",
                          "10.71.1.2", check=False, timeout=PINGS * 0.03 + 60)
        cli.exec(name, "h1", "ping", "-n", "-q", "-c", "200", "-i", "0.01", "-W", "2", "10.71.2.2")
        for index in range(3, len(AQM) + 1):
            cli.exec(name, "h1", "ping", "-n", "-q", "-c", "20", "-i", "0.01", "-W", "2", f"10.71.{index}.2")
        for interface, (_, printed) in EXTRAS.items():
            shown = qdiscs(cli, name, "h1", interface)
            absent = [token for token in printed if token not in shown]
            figures.add(f"h1 {interface}: netem extras in tc -s qdisc", len(printed) - len(absent), "of",
                        expected=len(printed), ok=not absent, note=" / ".join(printed))
            assert not absent, f"h1's {interface}: {absent} not in\n{shown}"
        for index, kind in enumerate(AQM, start=1):
            shown = qdiscs(cli, name, "h2", f"nx{index}")
            sent = leaf_sent_bytes(shown, kind)
            figures.add(f"h2 nx{index}: {kind} leaf under htb, bytes through it", sent, "B", bound="> 0", ok=sent > 0)
            assert "qdisc htb 1: root" in shown and sent > 0, shown
    assert dup_run.returncode in (0, 1), dup_run.stderr
    result = parse_ping("10.71.1.2", dup_run.stdout)
    dups = re.search(r"\+(\d+) duplicates", dup_run.stdout)
    duplicates = int(dups[1]) if dups else 0
    low, high = binomial_band(result.transmitted, DUPLICATE, 4.0)
    figures.add("duplicate 2%: duplicate replies ping counted", duplicates, "", expected=result.transmitted * DUPLICATE,
                bound=f"within 4 binomial sigmas [{low:.0f}, {high:.0f}] of {result.transmitted} probes",
                ok=low <= duplicates <= high)
    rtts = sorted(result.rtts_ms)
    p10, median, p90 = (statistics.quantiles(rtts, n=10)[i] for i in (0, 4, 8))
    figures.add("pareto jitter (10 ms +- 4 ms): right tail p90 - median vs left p10 - median",
                (p90 - median) / max(median - p10, 0.01), "x", bound="> 1.3 (a normal's is 1)",
                ok=(p90 - median) > 1.3 * (median - p10),
                note=f"p10 {p10:.2f}, median {median:.2f}, p90 {p90:.2f}, max {rtts[-1]:.2f} ms")
    assert low <= duplicates <= high, f"{duplicates} duplicates of {result.transmitted} (2%: [{low:.0f}, {high:.0f}])"
    assert (p90 - median) > 1.3 * (median - p10), (p10, median, p90)


def test_a_delay_sweep_changes_netem_in_place_and_its_figures_are_the_runs(cli: Cli, figures: Recorder,
                                                                             tmp_path: Path):
    name = "t10vm-sweep"
    topology = tmp_path / "ex1.yaml"
    topology.write_text((TOPOLOGIES / "mptcp-default-configuration.yaml").read_text()
                        .replace("name: ex1", f"name: {name}"))
    cli.run("down", "-q", name)
    try:
        out = cli.run("sweep", str(topology), "--set", "links.r2-h2-2.delay=5ms,50ms", "--repeat", "3",
                      "--duration", "5", "--results", str(tmp_path / "results"), timeout=1500)
    finally:
        cli.run("down", "-q", name)
        cli.assert_gone(name)
    folder = next((tmp_path / "results").glob(f"{name}-sweep-*"))
    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["complete"] and [len(point["runs"]) for point in sweep["points"]] == [3, 3]
    assert [point["lab"] for point in sweep["points"]] == ["up", "reshaped"], [p["lab"] for p in sweep["points"]]
    assert any("netem delay 50000us" in change for change in sweep["points"][1]["changes"]), sweep["points"][1]["changes"]
    assert (folder / "plots" / "sweep.png").stat().st_size > 5000
    swept_min_rtt = []
    for point in sweep["points"]:
        summaries = [json.loads((folder / run["results_dir"] / "summary.json").read_text()) for run in point["runs"]]
        flow = next(iter(point["flows"]))
        runs = [next(f for f in summary["flows"] if f["name"] == flow) for summary in summaries]
        goodputs = [run["goodput_bps"] for run in runs]
        figure = point["flows"][flow]["goodput_bps"]
        assert figure["values"] == goodputs and figure["mean"] == pytest.approx(statistics.fmean(goodputs))
        assert figure["ci95"] == pytest.approx(4.303 * statistics.stdev(goodputs) / 3 ** 0.5)
        swept = [path for run in runs for path in run["paths"]
                 if path["receiver_address"] == "192.168.11.2" or path["sender_address"] == "192.168.11.2"]
        assert len(swept) == 3 and all(path["rtt_ms_min"] for path in swept), \
            f"the path to h2's eth2b (192.168.11.2) in each run: {swept}"
        # The least RTT the sender saw is the path's delay; the mean under load adds whatever the
        # queues held, and that depends on how much the scheduler sends on the path.
        swept_min_rtt.append(min(path["rtt_ms_min"] for path in swept))
        mean_rtts = [path["rtt_ms_mean"] for path in swept if path["rtt_ms_mean"] is not None]
        figures.add(f"ex.1 sweep, r2-h2-2 delay {point['values']['links.r2-h2-2.delay']}: MPTCP goodput (3 runs)", figure["mean"] / 1e6,
                    "Mbit/s", note=f"95% CI +- {figure['ci95'] / 1e6:.2f}; the swept path's min RTT {swept_min_rtt[-1]:.1f} ms, "
                                   f"mean under load {statistics.fmean(mean_rtts) if mean_rtts else float('nan'):.1f} ms")
    # Only the way there crosses r2-h2-2: h2's route back to 10.0.0.0/24 is via eth2a (the seed's
    # second route is a fallback), so h2's ACKs on the eth2b subflow skip the swept link and the
    # 45 ms more on each end of it add 45 ms to the round trip, not 90.
    grown = swept_min_rtt[1] - swept_min_rtt[0]
    ok = 0.9 * 45 <= grown <= 45 + 10  # the TCG guest moves a minimum by a few ms; 0 and 90 stay far out
    figures.add("ex.1 sweep: the swept path's min RTT, 50 ms minus 5 ms", grown, "ms", expected=45.0,
                bound="within [0.9 x 45, 45 + 10] ms: 45 ms more on the way there; ACKs return via eth2a", ok=ok)
    assert ok, swept_min_rtt
