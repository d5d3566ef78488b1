"""netem's wider model and AQM leaves: loading, validation, tc lines, the kernel check (no Docker)."""

from __future__ import annotations

import pytest

from mptcpdock.errors import KernelFeatureError, TopologyError
from mptcpdock.plan.commands import make_plan
from mptcpdock.runtime.probe import parse_probe, require
from mptcpdock.topology.loader import load_topology_text, topology_to_yaml
from mptcpdock.topology.model import LossModel, Shaping
from mptcpdock.topology.validate import validate

BASE = """name: t
nodes: {h1: {}, h2: {}}
links:
"""


def planned(links: str):
    return make_plan(validate(load_topology_text(BASE + links, source="t.yaml")))


def test_netem_extras_and_an_aqm_leaf_become_tc_lines_and_round_trip():
    plan = planned("  - endpoints: [h1, h2]\n    rate: 10mbit\n    delay: 10ms\n    jitter: 2ms\n"
                   "    distribution: pareto\n    corrupt: 0.5%\n    duplicate: 1%\n    reorder: 25%\n"
                   "    reorder_correlation: 50%\n    egress: {h2: {qdisc: fq_codel, delay: 0ms, jitter: 0ms, "
                   "corrupt: 0%, duplicate: 0%, reorder: 0%}}\n")
    h1, h2 = plan.nodes["h1"].tc_lines(), plan.nodes["h2"].tc_lines()
    assert any("netem delay 10000us 2000us distribution pareto corrupt 0.5% duplicate 1% reorder 25% 50% limit" in line
               for line in h1), h1
    assert h2[-1] == "qdisc add dev eth0 parent 1:1 handle 10: fq_codel", h2
    assert plan.leaf_qdiscs == {"fq_codel": ["h1-h2 (h2's egress)"]}
    again = validate(load_topology_text(topology_to_yaml(plan.topology)))
    assert again.links[0].shaping == plan.topology.links[0].shaping and again.links[0].egress == plan.topology.links[0].egress


@pytest.mark.parametrize("kind, line", [
    ("codel", "codel"), ("pie", "pie"), ("fq", "fq"), ("cake", "cake unlimited"),
    ("red", "red limit 181680 min 15140 max 45420 avpkt 1000 burst 26 bandwidth 10000000bit probability 0.02"),
])
def test_each_aqm_leaf(kind: str, line: str):
    queue = "    queue: 80\n" if kind == "red" else ""
    tc = planned(f"  - endpoints: [h1, h2]\n    rate: 10mbit\n    qdisc: {kind}\n{queue}").nodes["h1"].tc_lines()
    assert tc[-1] == f"qdisc add dev eth0 parent 1:1 handle 10: {line}", tc


BAD = {
    "unknown qdisc": ("    qdisc: sfb\n", "t.yaml:6: links[0].qdisc: unknown qdisc 'sfb' (fix: write one of fq_codel"),
    "aqm and netem": ("    qdisc: fq_codel\n    delay: 5ms\n", "links[0].qdisc: qdisc fq_codel and delay"),
    "reorder without delay": ("    reorder: 10%\n", "links[0].reorder: reorder without delay"),
    "correlation without reorder": ("    delay: 5ms\n    reorder_correlation: 5%\n",
                                    "links[0].reorder_correlation: reorder_correlation without reorder"),
    "distribution without jitter": ("    delay: 5ms\n    distribution: pareto\n",
                                    "links[0].distribution: a delay distribution without jitter"),
    "unknown distribution": ("    delay: 5ms\n    jitter: 1ms\n    distribution: cauchy\n", "unknown distribution 'cauchy'"),
    "corrupt out of range": ("    corrupt: 120%\n", "links[0].corrupt"),
    "unknown loss model": ("    loss: {model: bernoulli, p: 1%}\n", "links[0].loss.model: loss model 'bernoulli'"),
    "loss model without its first": ("    loss: {model: gemodel, r: 30%}\n", "loss model gemodel without p"),
    "loss model, unknown key": ("    loss: {model: gemodel, p: 1%, h: 3%}\n", "links[0].loss.h: unknown key 'h'"),
    "loss state leaving too often": ("    loss: {model: state, p13: 60%, p14: 50%}\n",
                                     "links[0].loss: loss state: p13 + p14 = 110%"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_netem_extras_are_one_line(case: str):
    extra, message = BAD[case]
    with pytest.raises(TopologyError) as info:
        planned("  - endpoints: [h1, h2]\n    rate: 10mbit\n" + extra)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


PROBE = ("kernel=6.18.44-fc-v1045\nmptcp=yes\nip_mptcp=yes\nnetem=no\nhtb=yes\ntbf=yes\npfifo=yes\n"
         "aqm_fq_codel=no\naqm_codel=no\naqm_pie=yes\naqm_cake=no\naqm_fq=no\naqm_red=no\n")


def test_a_missing_aqm_qdisc_is_one_line_naming_the_kernel_and_the_qdisc():
    probe = parse_probe(PROBE)
    assert probe.aqm == {"fq_codel": False, "codel": False, "pie": True, "cake": False, "fq": False, "red": False}
    with pytest.raises(KernelFeatureError) as info:
        require(probe, netem_links=[], rate_links=True, allow_no_impairments=True,
                leaf_qdiscs={"fq_codel": ["r1-r2 (r1's egress)"]})
    text = str(info.value)
    assert "\n" not in text and text.startswith("qdisc fq_codel on r1-r2 (r1's egress): the Docker host's kernel "
                                                "(6.18.44-fc-v1045) has no fq_codel qdisc (sch_fq_codel; of the AQM "
                                                "qdiscs it has pie)"), text
    assert require(probe, netem_links=[], rate_links=True, allow_no_impairments=False, leaf_qdiscs={"pie": ["x"]}) is False


def test_loss_models_become_netem_lines_with_iproute2s_defaults_and_round_trip():
    plan = planned("  - endpoints: [h1, h2]\n    rate: 10mbit\n    loss: {model: gemodel, p: 5%, r: 50%}\n"
                   "    egress: {h2: {loss: {model: state, p13: 5%, p31: 50%, p14: 1%}}}\n")
    h1, h2 = plan.nodes["h1"].tc_lines(), plan.nodes["h2"].tc_lines()
    assert h1[-1] == "qdisc add dev eth0 parent 1:1 handle 10: netem loss gemodel 5% 50% 100% 0% limit 17", h1
    assert h2[-1] == "qdisc add dev eth0 parent 1:1 handle 10: netem loss state 5% 50% 0% 100% 1% limit 17", h2
    again = validate(load_topology_text(topology_to_yaml(plan.topology)))
    assert again.links[0].shaping == plan.topology.links[0].shaping and again.links[0].egress == plan.topology.links[0].egress
    gemodel, state = again.links[0].shaping.loss_model, again.links[0].egress["h2"].loss_model
    # Gilbert-Elliott: in the bad state p / (p + r) of the time, losing 1-h of it there
    assert gemodel.stationary_loss() == pytest.approx(0.05 / 0.55)
    # 4 states, only 1 <-> 3 and 1 -> 4 -> 1 reachable: pi3 = 0.1 pi1, pi4 = 0.01 pi1
    assert state.stationary_loss() == pytest.approx(0.11 / 1.11, rel=1e-3)
    assert again.links[0].egress["h2"].needs_netem and "loss state p13 5%" in state.describe()


def test_a_loss_percentage_set_by_an_event_replaces_a_loss_model():
    modelled = Shaping(loss_model=LossModel.with_defaults("gemodel", {"p": 1.0}))
    assert modelled.loss_model.params == (("p", 1.0), ("r", 99.0), ("1-h", 100.0), ("1-k", 0.0))
    assert modelled.merged(Shaping(loss=2.0)) == Shaping(loss=2.0)
    assert modelled.merged(Shaping(rate=5)).loss_model == modelled.loss_model
