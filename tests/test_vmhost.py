"""The VM-host tier: mptcpdock on a real netem kernel, through a remote Docker engine.

``pytest -m vmhost`` with ``DOCKER_HOST`` = ``MPTCPDOCK_VM_DOCKER_HOST`` (scripts/test.sh
starts the VM with scripts/vm-host.sh, copies the node image into it and runs this tier;
see tests/vmhost_support.py for when it skips). Everything is real: Docker in the VM, the
VM kernel's MPTCP, iperf3 under mptcpize, tc htb + netem; the seeds keep their own delays
and nothing runs with ``--allow-no-impairments``. Each lab is brought up once and measured
several ways; every figure is printed at the end of the tier's output.

What is checked, and the model behind each bound:

* Calibration (same run, same lab): the VM adds its own time to every round trip
  (software emulation: every packet crosses veths and bridges on emulated CPUs, and every
  netem delay ends with a timer the emulator fires late). Measured with 200 pings over an
  unshaped 1-link path, an unshaped 3-link path (two routers) and a 1-link path with netem
  10 ms each way, it is modelled as ``overhead = fixed + n x per_link + s x per_netem_stage``
  for a path of ``n`` links each way crossing ``s`` netem delay stages (link ends with a
  delay, both directions). Statistic: the minimum. netem's delay is constant, so every probe
  takes configured + the emulator's extra time, which is never negative and heavy-tailed: a
  probe is late by milliseconds whenever the host (shared, 2 cores) deschedules the emulated
  CPU. The median of that extra moves with the host's load between the calibration and the
  measurement (measured here: medians 1-3 ms above the minima at a load of 4, stdev up to
  20 ms); the minimum over 200 probes is the emulator's own cost, which calibration and
  measurement share. (Without the netem term ex.1's paths came out 0.5-0.6 ms above the
  bound at a load of 1: 6 stages of about 0.2 ms.)
* RTT per path of NeST's example 1: min ping RTT within max(0.5 ms, 2%) of the configured
  round trip (the links' delays, both ways, plus the 98-byte probe's serialisation at each
  link end's rate) plus ``overhead`` for 3 links and 6 netem stages.
* Loss: a link with ``loss: 2%`` shapes both of its ends, so an echo and its reply each
  survive with 0.98: round-trip loss 1 - 0.98^2 = 3.96%; the lost count
  must lie within 3 sigma of the binomial expectation (2000 probes).
* Jitter: ``delay: 25ms, jitter: 5ms`` is netem ``delay 25ms 5ms distribution normal`` on
  both ends: the RTT is 50 ms + the sum of two independent normal draws (stdev 5 ms each),
  stdev sqrt(2) * 5 = 7.07 ms. The reference for what the emulator adds to a netem path is
  the 10 ms constant-delay link of the same lab (a netem hop too; the unshaped calibration
  links have no netem timer and under-state it): the median within max(0.5 ms, 2%) of
  50 ms + that link's median extra; the spread as IQR / 1.349 (a normal's stdev, blind to
  the emulator's multi-millisecond outliers, which inflate the plain stdev: both reported)
  within 10% of sqrt(2 x 5^2 + that link's own IQR / 1.349 squared); and the share of
  probes within that stdev of the median near a normal's 68.3% (a uniform jitter each way
  would give 91%).
* Throughput with the seeds' delays (ex.1: 60 ms round trip per path): MPTCP >= 0.95 of
  2 x 10 Mbit x 1420/1514 = 18.76 Mbit/s (a MPTCP data segment carries 1420 payload bytes
  per 1514-byte frame), each single-path TCP baseline >= 0.95 of 10 Mbit x 1448/1514.
* The kernel selftest simult_flows.sh, its five cases as topologies
  (topologies/simult-flows/): each direction's goodput >= 16 MiB / bound, with the
  selftest's bound = 16 MiB / (0.9 (r1 + r2)) + 0.4 s (see test_simult_flows); the case the
  selftest marks flaky, "unbalanced bwidth", has the bound reported and must aggregate; the
  same case with the kernel's GSO (``gso_max_segs: kernel``, as the selftest's veths have
  it) is held to the bound.
* The life cycle through the remote engine: up, status, exec, run (results copied out of
  the VM through the API), down leaving nothing labelled with the lab; two labs side by
  side with the same subnets; a container killed half-way through ``up`` leaving nothing.

The emulator runs on this machine's CPUs; a ping series or a throughput run during which
the machine's hypervisor stole more than STEAL_LIMIT_PERCENT of them is repeated (see
vmhost_support.unstarved: the steal decides, never the outcome), and every figure shows it.
A measurement that misses its bound although it had its CPUs fails; one that misses in runs
that were all starved is inconclusive: the test skips saying so, and its figures stay in the
table marked STRV (vmhost_support.judge).
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from vmhost_support import (STEAL_LIMIT_PERCENT, TOPOLOGIES, Cli, PingResult, Recorder, binomial_band, flow_of,
                            frame_time_ms, judge, results_dir_of, save_pings, start_killer, steady_ping,
                            steal_note, summary_of, unstarved, with_host_steal, write_topology)

pytest_plugins = ["vmhost_support"]
pytestmark = [pytest.mark.vmhost]

EX1 = TOPOLOGIES / "mptcp-default-configuration.yaml"
SIMULT = TOPOLOGIES / "simult-flows"

PROBES = 200  # RTT probes per path, 10 ms apart
LOSS_PROBES = 2000  # 5 ms apart
JITTER_PROBES = 1000  # 5 ms apart
MPTCP_PAYLOAD, TCP_PAYLOAD, FRAME = 1420, 1448, 1514
# ex.1's MPTCP flow and each baseline flow: long enough that slow start (about 1 s to fill a
# 60 ms path, and its losses) weighs little in the average
FLOW_SECONDS = 20


@pytest.fixture(autouse=True)
def _on_the_vm_engine(vm_engine) -> None:
    """Every test here needs the VM engine (or the whole tier skips, see vmhost_support)."""


def tolerance_ms(configured_ms: float) -> float:
    return max(0.5, 0.02 * configured_ms)


def rtt_figures(figures: Recorder, what: str, result: PingResult, configured: float, overhead: float,
                *, overhead_is_upper: bool = False) -> bool:
    """The minimum RTT against configured + overhead, within the tolerance. With
    ``overhead_is_upper`` the overhead is an upper estimate (see Calibration): then the
    minimum must lie between the configured round trip itself and configured + overhead +
    tolerance (a probe cannot come back sooner than the delays it crosses)."""
    expected = configured + overhead
    if overhead_is_upper:
        ok = configured <= result.min <= expected + tolerance_ms(configured)
        bound = (f"configured {configured:.3f} <= min <= configured + overhead {overhead:.3f} + "
                 f"{tolerance_ms(configured):.2f} = {expected + tolerance_ms(configured):.3f} ms")
    else:
        ok = abs(result.min - expected) <= tolerance_ms(configured)
        bound = f"configured + overhead {overhead:.3f} = {expected:.3f} +/- {tolerance_ms(configured):.2f} ms"
    figures.add(f"{what}: min RTT", result.min, "ms", expected=configured,
                bound=bound,
                ok=ok, note=f"median {result.median:.3f}, mean {result.mean:.3f}, stdev {result.stdev:.3f}, "
                            f"{result.received}/{result.transmitted} replies; {steal_note(result.host_steal_percent)}")
    return ok


# -- calibration --------------------------------------------------------------------------------

class Calibration:
    """The VM's own round-trip time (minima): per link a path crosses each way (unshaped
    1-link and 3-link paths), plus per netem delay stage a probe passes (the 1-link path
    with 10 ms each way: two stages), since a netem delay ends with a timer that the
    emulator fires late."""

    def __init__(self, one: PingResult, three: PingResult, delayed: PingResult) -> None:
        self.one, self.three, self.delayed = one, three, delayed
        self.per_link = (three.min - one.min) / 2
        self.fixed = one.min - self.per_link
        self.per_netem_stage = (delayed.min - 2 * DELAY_MS - (self.fixed + self.per_link)) / 2

    # The netem stage is calibrated on netem as the root qdisc, whose timer fires later than a
    # netem leaf's under htb (ex.1's links): 0.30-0.43 ms per stage here against about 0.12 ms
    # in ex.1's six-stage paths (measured min 61.60 ms of 60.19 configured + 0.68 unshaped), so
    # for paths of shaped links the overhead is an upper estimate (rtt_figures' overhead_is_upper).
    def overhead(self, links: int, netem_stages: int = 0) -> float:
        return self.fixed + links * self.per_link + netem_stages * self.per_netem_stage


#: One lab for the calibration and the impairments (brought up once, every probe run in turn,
#: then down): h1-h2 directly (1 link) and h1-r1-r2-h2 (3 links, as ex.1's paths), both
#: unshaped; then three more direct links: a plain delay, a lossy one, a jittery one (netem
#: alone, no rate).
RTT_LAB = {
    "name": "vm-rtt",
    "description": "calibration paths (unshaped, 1 and 3 links) and impaired links (delay, loss, jitter)",
    "nodes": {
        "h1": {"routes": [{"to": "10.9.4.0/24", "dev": "eth1"}]},
        "r1": {"kind": "router", "routes": [{"to": "10.9.4.0/24", "dev": "eth1"}]},
        "r2": {"kind": "router", "routes": [{"to": "10.9.2.0/24", "dev": "eth0"}]},
        "h2": {"routes": [{"to": "10.9.2.0/24", "dev": "eth1"}]},
    },
    "links": [
        {"endpoints": ["h1:eth0", "h2:eth0"], "subnet": "10.9.1.0/24"},
        {"endpoints": ["h1:eth1", "r1:eth0"], "subnet": "10.9.2.0/24"},
        {"endpoints": ["r1:eth1", "r2:eth0"], "subnet": "10.9.3.0/24"},
        {"endpoints": ["r2:eth1", "h2:eth1"], "subnet": "10.9.4.0/24"},
        {"endpoints": ["h1:eth2", "h2:eth2"], "subnet": "10.9.11.0/24", "delay": "10ms"},
        {"endpoints": ["h1:eth3", "h2:eth3"], "subnet": "10.9.12.0/24", "loss": "2%"},
        {"endpoints": ["h1:eth4", "h2:eth4"], "subnet": "10.9.13.0/24", "delay": "25ms", "jitter": "5ms"},
    ],
}
DELAY_MS, LOSS, JITTER_DELAY_MS, JITTER_MS = 10.0, 0.02, 25.0, 5.0


@pytest.fixture(scope="module")
def rtt_lab(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> dict[str, PingResult]:
    """Every probe of the calibration and impairment tests, in this order, one at a time."""
    path = write_topology(tmp_path_factory.mktemp("rtt") / "vm-rtt.yaml", RTT_LAB)
    with cli.lab(path, "vm-rtt", Recorder("calibration and impairments lab")) as lab:
        results = {
            "unshaped-1": steady_ping(cli, lab, "h1", "10.9.1.2", count=PROBES),
            "unshaped-3": steady_ping(cli, lab, "h1", "10.9.4.2", count=PROBES),
            "delay": steady_ping(cli, lab, "h1", "10.9.11.2", count=PROBES),
            "loss": steady_ping(cli, lab, "h1", "10.9.12.2", count=LOSS_PROBES, interval=0.005),
            "jitter": steady_ping(cli, lab, "h1", "10.9.13.2", count=JITTER_PROBES, interval=0.005),
        }
    save_pings(tmp_path_factory.getbasetemp() / "vmhost-pings.json", results)
    return results


@pytest.fixture(scope="module")
def calibration(rtt_lab: dict[str, PingResult]) -> Calibration:
    return Calibration(rtt_lab["unshaped-1"], rtt_lab["unshaped-3"], rtt_lab["delay"])


def test_calibration_of_the_vms_own_round_trip(calibration: Calibration, figures: Recorder):
    one, three, delayed = calibration.one, calibration.three, calibration.delayed
    for what, result in (("unshaped 1-link path", one), ("unshaped 3-link path", three),
                         ("1-link path, netem delay 10 ms each way", delayed)):
        figures.add(f"{what}: min RTT", result.min, "ms",
                    note=f"median {result.median:.3f}, mean {result.mean:.3f}, stdev {result.stdev:.3f}, "
                         f"{result.received}/{result.transmitted} replies; {steal_note(result.host_steal_percent)}")
    figures.add("overhead model: fixed", calibration.fixed, "ms",
                note="overhead = fixed + links x per_link + netem stages x per_netem_stage")
    figures.add("overhead model: per link (each way)", calibration.per_link, "ms",
                note="a fit through two minima: near 0 it may come out slightly negative")
    figures.add("overhead model: per netem delay stage", calibration.per_netem_stage, "ms",
                note="(10 ms link's min - 20 - overhead(1 link)) / 2")
    assert one.lost == 0 and three.lost == 0 and delayed.lost == 0, "an idle link without loss lost probes"
    # A netem timer an emulator fires more than 2 ms late, or a delay shorter than asked,
    # would make every delay measured after it meaningless.
    assert -0.25 < calibration.per_netem_stage < 2, calibration.per_netem_stage
    assert len(one.rtts_ms) == PROBES and len(three.rtts_ms) == PROBES
    # An unshaped path cannot be slower than a few milliseconds even under emulation; more
    # means the emulator is starved, and nothing measured after it would mean anything.
    assert 0 < one.median < 5 and 0 < three.median < 10, (one.median, three.median)


def test_loss_matches_the_binomial_expectation(rtt_lab: dict[str, PingResult], figures: Recorder):
    result = rtt_lab["loss"]
    p = 1 - (1 - LOSS) ** 2  # the echo and the reply each cross a 2% end
    low, high = binomial_band(result.transmitted, p)
    ok = low <= result.lost <= high
    figures.add("2% link (both ends): round-trip loss", 100 * result.lost / result.transmitted, "%",
                expected=100 * p, bound=f"lost {result.lost} of {result.transmitted}, 3 sigma band "
                f"[{low:.0f}, {high:.0f}] around {result.transmitted * p:.1f}", ok=ok)
    assert result.transmitted >= 2000
    assert ok, f"{result.lost} lost of {result.transmitted}; expected {low:.0f}..{high:.0f}"


def test_jitter_has_the_configured_normal_spread(rtt_lab: dict[str, PingResult], figures: Recorder):
    """Against the 10 ms link of the same lab (netem, constant delay, same single hop): what
    the emulator adds to a netem path, in location and in spread, is measured there."""
    result, reference = rtt_lab["jitter"], rtt_lab["delay"]
    assert result.lost == 0
    configured = 2 * JITTER_DELAY_MS
    emulator = reference.median - 2 * DELAY_MS  # the netem path's own median extra
    expected_median = configured + emulator
    median_ok = abs(result.median - expected_median) <= tolerance_ms(configured)
    expected_spread = math.sqrt(2 * JITTER_MS ** 2 + reference.robust_stdev ** 2)
    spread_ok = abs(result.robust_stdev - expected_spread) <= 0.10 * expected_spread
    within = sum(abs(rtt - result.median) <= expected_spread for rtt in result.rtts_ms) / len(result.rtts_ms)
    shape_ok = abs(within - 0.683) <= 0.05
    figures.add("25 ms +/- 5 ms normal (both ends): mean RTT", result.mean, "ms", expected=configured,
                note=f"stdev {result.stdev:.3f} ms (plain, with the emulator's outliers); "
                     f"the 10 ms link: mean {reference.mean:.3f}, stdev {reference.stdev:.3f}; "
                     f"{steal_note(result.host_steal_percent)}, the 10 ms link's {steal_note(reference.host_steal_percent)}")
    figures.add("25 ms +/- 5 ms normal (both ends): median RTT", result.median, "ms", expected=configured,
                bound=f"configured + the 10 ms link's median extra {emulator:.3f} = {expected_median:.3f} "
                      f"+/- {tolerance_ms(configured):.2f}", ok=median_ok)
    figures.add("25 ms +/- 5 ms normal (both ends): RTT stdev (IQR/1.349)", result.robust_stdev, "ms",
                expected=math.sqrt(2) * JITTER_MS,
                bound=f"sqrt(2 x 5^2 + the 10 ms link's {reference.robust_stdev:.3f}^2) = {expected_spread:.3f} "
                      "+/- 10%", ok=spread_ok)
    figures.add("25 ms +/- 5 ms normal: share within that stdev of the median", 100 * within, "%", expected=68.3,
                bound="normal: 68.3 +/- 5 (uniform jitter each way: 91)", ok=shape_ok)
    # both series feed the bounds: inconclusive when either was starved in every one of its runs
    judge(figures, median_ok and spread_ok and shape_ok,
          f"median {result.median:.3f}, spread {result.robust_stdev:.3f}, within {100 * within:.1f}%",
          [max(min(result.host_steal_percent), min(reference.host_steal_percent))])


# -- NeST's example 1: RTT per path, then throughput ------------------------------------------------

def ex1_path_rtt_ms(forward: list[int], back: list[int]) -> float:
    """Configured round trip: each crossed link end's delay, plus the probe's serialisation
    at that end's rate (echo and reply are 98-byte frames)."""
    links = yaml.safe_load(EX1.read_text())["links"]

    def one_way(index: int) -> float:
        link = links[index]
        delay = float(str(link.get("delay", "0ms")).removesuffix("ms"))
        rate = float(str(link["rate"]).removesuffix("mbit")) * 1e6
        return delay + frame_time_ms(rate)

    return sum(one_way(i) for i in forward) + sum(one_way(i) for i in back)


# ex.1's links: 0 h1-r1, 1 r1-r2, 2 r2-h2 (eth2a, 192.168.10.0/24), 3 r2-h2 (eth2b, 192.168.11.0/24).
# h2 answers both addresses through eth2a (its first route to 10.0.0.0/24); the second path's
# echo arrives over eth2b.
EX1_PATHS = {"192.168.10.2 (eth2a)": ("192.168.10.2", [0, 1, 2], [2, 1, 0]),
             "192.168.11.2 (eth2b)": ("192.168.11.2", [0, 1, 3], [2, 1, 0])}


@pytest.fixture(scope="class")
def ex1(cli: Cli) -> Iterator[str]:
    """ex.1 up for the tests of one class (down before the next lab comes up)."""
    with cli.lab(EX1, "vm-ex1", Recorder("ex.1 lab")) as lab:
        yield lab


class TestEx1:
    """NeST's example 1 with its own delays (10 ms on every link: 60 ms per path round trip),
    brought up once for both tests (class scope: down before the next lab comes up)."""

    def test_rtt_per_path_is_the_configured_round_trip(self, ex1: str, cli: Cli, calibration: Calibration,
                                                       figures: Recorder):
        failures, steals = [], []
        for what, (address, forward, back) in EX1_PATHS.items():
            result = steady_ping(cli, ex1, "h1", address, count=PROBES)
            configured = ex1_path_rtt_ms(forward, back)
            # 3 links each way; every link end crossed has a netem delay (10 ms): 6 stages
            overhead = calibration.overhead(3, netem_stages=len(forward) + len(back))
            if result.lost or not rtt_figures(figures, f"ex.1 path to {what}", result, configured, overhead,
                                              overhead_is_upper=True):
                failures.append(f"{what}: min {result.min:.3f} ms, configured {configured:.3f} + overhead "
                                f"{overhead:.3f}, {result.lost} lost")
                steals.append(min(result.host_steal_percent))
        # inconclusive only when every path that missed was starved in each of its series
        judge(figures, not failures, "; ".join(failures), steals)

    def test_mptcp_and_single_path_tcp_reach_the_framing_limits(self, ex1: str, cli: Cli, figures: Recorder,
                                                                tmp_path: Path):
        out, steals = unstarved(lambda: cli.run("run", "--lab", ex1, "--duration", str(FLOW_SECONDS), "--baseline",
                                                "--no-plots", "--results", str(tmp_path), check=False), attempts=2)
        assert out.returncode in (0, 130), out.stderr  # 130: a flow was interrupted (its figures still count)
        summary = summary_of(results_dir_of(out.stdout))
        mptcp = flow_of(summary, "h1-h2")
        limit = 2 * 10e6 * MPTCP_PAYLOAD / FRAME
        goodput = mptcp["goodput_bps"]
        ok = goodput >= 0.95 * limit
        figures.add("ex.1 MPTCP goodput (2 x 10 Mbit, 60 ms RTT paths)", goodput / 1e6, "Mbit/s",
                    expected=limit / 1e6, bound=">= 0.95 of 2 x 10 Mbit x 1420/1514", ok=ok,
                    note=f"{mptcp['subflows']['established']} subflows, {mptcp.get('retransmits')} retransmits; "
                         f"{steal_note(steals)}")
        baseline_ok = []
        for name in mptcp["baseline"]["flows"]:
            tcp = flow_of(summary, name)
            tcp_limit = 10e6 * TCP_PAYLOAD / FRAME
            passed = tcp["status"] == "ok" and tcp["goodput_bps"] >= 0.95 * tcp_limit
            baseline_ok.append(passed)
            figures.add(f"ex.1 {name} single-path TCP goodput", tcp["goodput_bps"] / 1e6, "Mbit/s",
                        expected=tcp_limit / 1e6, bound=">= 0.95 of 10 Mbit x 1448/1514", ok=passed,
                        note=f"{tcp.get('retransmits')} retransmits")
        if summary.get("incomplete"):
            figures.add("ex.1 run INCOMPLETE", None, note="; ".join(summary.get("reasons", [])), ok=False)
        assert not summary.get("incomplete"), summary.get("reasons")
        assert mptcp["subflows"]["established"] == 2, mptcp["subflows"]
        assert len(baseline_ok) == 2
        judge(figures, ok and all(baseline_ok),
              f"MPTCP {goodput / 1e6:.2f} Mbit/s of {limit / 1e6:.2f}; baselines "
              f"{[round(flow_of(summary, n)['goodput_bps'] / 1e6, 2) for n in mptcp['baseline']['flows']]}", steals)


# -- the kernel selftest simult_flows.sh --------------------------------------------------------

SIZE = 2 * 2048 * 4096  # the selftest's 16 MiB
SIMULT_CASES = {  # file: (rate1, rate2, delay1, delay2) as in run_test
    "balanced-bwidth": (10, 10, 0, 0),
    "balanced-bwidth-unbalanced-delay": (10, 10, 1, 25),
    "unbalanced-bwidth": (15, 5, 0, 0),
    "unbalanced-bwidth-kernel-gso": (15, 5, 0, 0),  # the same with the kernel's GSO, as the selftest has it
    "unbalanced-bwidth-unbalanced-delay": (15, 5, 1, 25),
    "unbalanced-bwidth-opposed-delay": (15, 5, 25, 1),
}
# The selftest itself marks "unbalanced bwidth" (equal, zero delays) flaky
# (MPTCP_LIB_SUBTEST_FLAKY=1 run_test ... "unbalanced bwidth", under "we still need some
# additional infrastructure to pass the following test-cases"): its result is printed, and a
# miss does not fail the suite. Here too the bound is reported, not required; what is required
# is that MPTCP aggregates: each direction carries at least AGGREGATION times what the faster
# path alone can carry, which a flow stuck on one path (or a subflow that never joined) cannot.
# What costs this case its bound on the emulated VM is mptcpdock's GSO cap (measured in
# unbalanced-bwidth-kernel-gso.yaml's header); that file, the same case with the kernel's GSO
# as the selftest runs it, is held to the selftest's bound like the other cases.
FLAKY_UPSTREAM = {"unbalanced-bwidth"}
AGGREGATION = 1.1


@pytest.mark.parametrize("case", list(SIMULT_CASES))
def test_simult_flows(case: str, cli: Cli, figures: Recorder, tmp_path: Path):
    """simult_flows.sh fails a 16 MiB transfer that takes longer than
    ``size / (0.9 (r1 + r2)) + 0.4 s`` (its ``time``, before the 50 ms slack). mptcpdock's
    flows are timed, not sized, so each direction runs for about that long and its goodput
    must be at least the bound-equivalent rate ``size / bound``: a flow that averages that
    rate moves 16 MiB in the bound. The timed flow does not pay the connection set-up the
    0.4 s covers (iperf3 times from the data connection on), which the bound's 0.4 s and
    MP_JOIN's handshakes during the flow roughly offset; the checked rate is 0.91 of the
    MPTCP framing limit (r1 + r2) x 1420/1514, so the test is no easier than the selftest's.
    The one case the selftest marks flaky (FLAKY_UPSTREAM) is held to aggregation instead.
    A case that misses runs again on the same lab, up to ATTEMPTS runs; all are reported."""
    path = SIMULT / f"{case}.yaml"
    rate1, rate2, delay1, delay2 = SIMULT_CASES[case]
    topology = yaml.safe_load(path.read_text())
    shaped = [link for link in topology["links"] if "rate" in link]
    assert [(link["rate"], link.get("delay")) for link in shaped] == \
        [(f"{rate1}mbit", f"{delay1}ms" if delay1 else None), (f"{rate2}mbit", f"{delay2}ms" if delay2 else None)]
    bound_s = SIZE * 8 / (0.9 * (rate1 + rate2) * 1e6) + 0.4
    needed = SIZE * 8 / bound_s
    framing = (rate1 + rate2) * 1e6 * MPTCP_PAYLOAD / FRAME
    lab = topology["name"]
    with cli.lab(path, lab):
        steals: list[float] = []
        for attempt in range(1, ATTEMPTS + 1):
            problems, steal = with_host_steal(
                lambda: simult_attempt(case, cli, figures, tmp_path / f"attempt{attempt}", lab, needed, framing,
                                       bound_s, f"attempt {attempt}"))
            steals.append(steal)
            figures.add(f"{case}, attempt {attempt}: host CPU steal during it", steal, "%",
                        bound=f"<= {STEAL_LIMIT_PERCENT:g}% or the run measured the host's neighbours")
            if not problems:
                break
    judge(figures, not problems, "; ".join(problems), steals)


#: A case that misses is run again on the same lab, up to ATTEMPTS runs (every one reported):
#: the emulated VM's throughput varies by a few percent with the host's load, and the bounds
#: sit at 0.91 of the framing limit (a miss by 0.01 Mbit/s was seen). "unbalanced bwidth,
#: opposed delay" sits closest: its listener direction (ns3 sends; the 15 Mbit path has a
#: 50 ms round trip) met 17.08 in 5 of 9 unstarved runs on 2026-12-08 (16.76-17.80). What
#: decides it is the first second: iperf3's first interval carried 0.0 and 6.3 Mbit/s in the
#: misses, 10.5-12.3 in the passes, and 17.8-19.9 every second after (cause not yet found).
#: Two runs would fail such a case about one CI in five; three, about one in twelve. All
#: misses fail, unless the host stole more than STEAL_LIMIT_PERCENT of its CPU during each:
#: then the case is inconclusive (see vmhost_support.judge).
ATTEMPTS = 3


def simult_attempt(case: str, cli: Cli, figures: Recorder, results: Path, lab: str, needed: float,
                   framing: float, bound_s: float, attempt: str) -> list[str]:
    """One run of a simult_flows lab; the problems found (none: both directions within the bound)."""
    rate1, rate2, delay1, delay2 = SIMULT_CASES[case]
    results.mkdir(parents=True, exist_ok=True)
    out = cli.run("run", "--lab", lab, "--no-plots", "--results", str(results), check=False)
    assert out.returncode in (0, 130), out.stderr  # 130: a flow was interrupted (its figures still count)
    summary = summary_of(results_dir_of(out.stdout))
    problems = [f"incomplete: {reason}" for reason in summary.get("reasons", [])] if summary.get("incomplete") else []
    for name, direction in (("ns3-sends", "listener sends"), ("ns1-sends", "connector sends")):
        flow = flow_of(summary, name)
        goodput = flow["goodput_bps"]
        joined = flow["status"] == "ok" and flow["subflows"]["established"] == 2
        bound = f">= 16 MiB / {bound_s:.3f} s"
        required = needed
        if case in FLAKY_UPSTREAM:
            required = AGGREGATION * max(rate1, rate2) * 1e6 * MPTCP_PAYLOAD / FRAME
            bound = (f"{'meets' if goodput >= needed else 'BELOW'} the selftest's {needed / 1e6:.2f}, which "
                     f"upstream marks flaky; required: >= {AGGREGATION} x the faster path alone "
                     f"({required / 1e6:.2f})")
        ok = joined and goodput >= required
        figures.add(f"{case} ({rate1}/{rate2} Mbit, {delay1}/{delay2} ms), {direction} ({flow['status']}), {attempt}",
                    goodput / 1e6, "Mbit/s",
                    expected=needed / 1e6, ok=ok,
                    bound=f"{bound}; {goodput / framing:.3f} of the framing limit {framing / 1e6:.2f}",
                    note=f"{flow['subflows']['established']} subflows, 16 MiB would take "
                         f"{SIZE * 8 / goodput if goodput else float('inf'):.2f} s")
        if not ok:
            problems.append(f"{attempt}: {name}: {goodput / 1e6:.2f} Mbit/s (need {required / 1e6:.2f}), "
                            f"{flow['subflows']['established']} subflows, status {flow['status']}")
    return problems


# -- the life cycle through the remote engine --------------------------------------------------

LIFE_LAB = {
    "name": "vm-life",
    "description": "two hosts, two 10 Mbit links with delays, one MPTCP flow",
    "nodes": {
        "h1": {"mptcp": {"limits": {"subflows": 1, "add_addr_accepted": 1}}},
        "h2": {"mptcp": {"limits": {"subflows": 1, "add_addr_accepted": 1}, "endpoints": {"eth1": ["signal"]},
                         "monitor": True}},
    },
    "links": [
        {"endpoints": ["h1:eth0", "h2:eth0"], "subnet": "10.9.21.0/24", "rate": "10mbit", "delay": "5ms"},
        {"endpoints": ["h1:eth1", "h2:eth1"], "subnet": "10.9.22.0/24", "rate": "10mbit", "delay": "5ms"},
    ],
    "flows": [{"src": "h1", "dst": "h2", "duration": 4}],
}


def rx_packets(cli: Cli, lab: str, node: str, interface: str) -> int:
    return int(cli.exec(lab, node, "cat", f"/sys/class/net/{interface}/statistics/rx_packets"))


def test_life_cycle_through_the_remote_engine_with_two_labs_side_by_side(cli: Cli, figures: Recorder,
                                                                        tmp_path: Path):
    """up (two labs with the same subnets at once), status, exec, run (its files copied out of
    the VM through the API), down: nothing labelled with either lab is left on the engine."""
    path = write_topology(tmp_path / "vm-life.yaml", LIFE_LAB)
    engine, names = cli.engine, ("vm-life", "vm-life-b")
    for name in names:
        cli.run("down", "-q", name)
    started = time.monotonic()
    procs = {name: cli.popen("up", str(path), "--name", name) for name in names}
    outputs = {name: proc.communicate(timeout=600) for name, proc in procs.items()}
    figures.add("two 2-node labs with the same subnets brought up at once", time.monotonic() - started, "s")
    try:
        for name, proc in procs.items():
            out, err = outputs[name]
            assert proc.returncode == 0, (name, out, err)
            assert f"lab {name} is up: 2 nodes, 2 links" in out, out
            assert f"kernel {engine.kernel}" in out and "netem yes" in out, out
            assert "WITHOUT" not in out + err  # nothing dropped
            containers, networks = engine.lab_objects(name)
            assert sorted(containers) == [f"{name}-h1", f"{name}-h2"] and len(networks) == 2, (containers, networks)
        status = cli.run("status").stdout
        assert all(re.search(rf"^{name}\s", status, re.M) for name in names), status
        addresses = cli.exec("vm-life", "h2", "ip", "-o", "-4", "addr", "show")
        assert "10.9.21.2/24" in addresses and "10.9.22.2/24" in addresses, addresses
        qdiscs = cli.exec("vm-life", "h1", "tc", "qdisc", "show", "dev", "eth0")
        assert re.search(r"netem .*delay 5ms", qdiscs) and "htb" in qdiscs, qdiscs
        before = {name: rx_packets(cli, name, "h2", "eth0") for name in names}
        cli.run("exec", "--lab", "vm-life", "h1", "--", "ping", "-c", "20", "-i", "0.05", "10.9.21.2")
        after = {name: rx_packets(cli, name, "h2", "eth0") for name in names}
        assert after["vm-life"] - before["vm-life"] >= 20, (before, after)
        assert after["vm-life-b"] - before["vm-life-b"] < 5, (before, after)  # the other lab saw none of it
        started = time.monotonic()
        run = cli.run("run", "--lab", "vm-life", "--results", str(tmp_path / "results"))
        figures.add("'mptcpdock run' of a 4 s flow, results copied out", time.monotonic() - started, "s")
        folder = results_dir_of(run.stdout)
        for name in ("summary.json", "flows/h1-h2/client.json", "flows/h1-h2/server.json", "monitors/h2.log",
                     "samples/h1.txt", "nodes/h2/info-end.txt", "plots/throughput.png", "commands.sh"):
            assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
        flow = flow_of(summary_of(folder), "h1-h2")
        shares = [path["share"] for path in flow["paths"] if path["bytes"] > 0]
        figures.add("vm-life MPTCP goodput (2 x 10 Mbit, 10 ms RTT, 4 s)", flow["goodput_bps"] / 1e6, "Mbit/s",
                    note=f"path shares {', '.join(f'{share:.2f}' for share in shares)}")
        assert flow["status"] == "ok" and flow["subflows"]["established"] == 2, flow["subflows"]
        assert len(shares) == 2 and min(shares) >= 0.2, flow["paths"]  # both paths carried data
    finally:
        downs = {name: cli.popen("down", name) for name in names}
        results = {name: proc.communicate(timeout=600) for name, proc in downs.items()}
    for name, proc in downs.items():
        assert proc.returncode == 0, (name, results[name])
        assert f"lab {name}: removed 2 containers and 2 networks" in results[name][0], results[name]
        cli.assert_gone(name)
    status = cli.run("status").stdout
    assert not any(re.search(rf"^{name}\s", status, re.M) for name in names), status


def test_a_container_killed_half_way_through_up_leaves_nothing(cli: Cli, figures: Recorder):
    """Kill the first node container that runs while ``up`` of ex.1 (4 nodes; about 40 s on
    the emulated VM) is still going: ``up`` must fail with one line and remove everything."""
    lab = "vm-broken"
    cli.run("down", "-q", lab)
    proc = cli.popen("up", "-q", str(EX1), "--name", lab)
    started = time.monotonic()
    killer, killed = start_killer(cli.engine.client, lab, proc)
    try:
        out, err = proc.communicate(timeout=600)
        killer.join(timeout=30)
        left = cli.engine.lab_objects(lab)
        figures.add("up of ex.1 with a node killed: ended after", time.monotonic() - started, "s",
                    ok=proc.returncode == 1 and left == ([], []),
                    note=f"killed {killed[0] if killed else 'nothing'}; exit {proc.returncode}; "
                         f"error: {err.strip()[:300] or '(none)'}; left: {len(left[0])} containers, "
                         f"{len(left[1])} networks")
        assert killed, f"up ended before any container ran (exit {proc.returncode}): {out} {err}"
        assert proc.returncode == 1, f"up of {lab} exited {proc.returncode} although {killed[0]} was killed: {out} {err}"
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "Traceback" not in err
        assert left == ([], []), f"left on the VM engine after the failed up: {left}"
        assert not re.search(rf"^{lab}\s", cli.run("status").stdout, re.M)
    finally:
        if proc.poll() is None:
            proc.kill()
        cli.run("down", "-q", lab)  # whatever happened: the tier leaves nothing behind
