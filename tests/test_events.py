"""Events and traces without Docker: YAML, validation (one line each), and the planner's exact
per-node tc/ip lines and times (issue 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TOPOLOGIES
from mptcpdock.errors import KernelFeatureError, TopologyError
from mptcpdock.plan.commands import make_plan
from mptcpdock.plan.events import DROP_FILTER, plan_events, restore_text, schedule_text
from mptcpdock.runtime.probe import parse_probe, require_for_events
from mptcpdock.topology.loader import load_topology, load_topology_text, topology_to_yaml
from mptcpdock.topology.traces import MIN_TRACE_RATE, parse_csv, parse_mahimahi
from mptcpdock.topology.validate import validate

BASE = """
name: ev
nodes:
  h1:
    mptcp: {endpoints: [{interface: eth1, flags: [subflow]}]}
    routes: [{to: 10.9.0.0/24, via: 10.0.0.2}]
  h2:
    mptcp: {endpoints: [{interface: eth1, flags: [signal]}]}
links:
  - {name: primary, endpoints: [h1, h2], subnet: 10.0.0.0/24, rate: 10mbit, delay: 10ms, loss: 1%, queue: 40}
  - {name: backup, endpoints: [h1, h2], subnet: 10.0.1.0/24, rate: 20mbit}
  - {name: bare, endpoints: [h1, h2], subnet: 10.0.2.0/24}
flows:
  - {src: h1, dst: h2, duration: 10}
events:
"""


def topo(events: str, source: str = "ev.yaml"):
    return validate(load_topology_text(BASE + events, source=source))


def steps_of(events: str, node: str = "h1", **kw):
    topology = topo(events)
    plan = plan_events(topology, make_plan(topology), **kw)
    return plan, [(s.t, s.tool, " ".join(s.args)) for s in plan.schedules[node].steps]


def test_events_round_trip_through_yaml():
    topology = topo("""
  - {t: 3, link: primary, state: down, label: cut}
  - {t: [1, 2.5], link: backup, from: h1, set: {rate: 5mbit, queue: 30}}
  - {t: 2, every: 2, until: 8, link: backup, blackhole: on}
  - {t: 4, node: h1, endpoint: {interface: eth1, flags: [subflow, backup]}}
  - {t: 5, node: h2, endpoint: {interface: eth1, remove: true}}
  - {t: 6, node: h1, limits: {subflows: 4}}
""")
    again = validate(load_topology_text(topology_to_yaml(topology)))
    assert again.events == topology.events
    assert [e.times() for e in topology.events] == [[3.0], [1.0, 2.5], [2.0, 4.0, 6.0, 8.0], [4.0], [5.0], [6.0]]


@pytest.mark.parametrize("event, expected", [
    ("{t: -1, link: primary, state: down}", "ev.yaml:16: events[0].t: t=-1 s is in the past"),
    ("{t: 11, link: primary, state: down}", "ev.yaml:16: events[0].t: t=11 s is after the run ends (t=10 s"),
    ("{t: 2, every: 3, until: 12, link: primary, state: down}", "events[0].until: t=11 s is after the run ends"),
    ("{t: 1, link: wifi, state: down}", "ev.yaml:16: events[0].link: unknown link 'wifi' (fix: use one of: primary, "
                                        "backup, bare)"),
    ("{t: 1, node: h9, limits: {subflows: 2}}", "events[0].node: unknown node 'h9'"),
    ("{t: 1, node: h1, endpoint: {interface: eth7, flags: [backup]}}", "events[0].endpoint.interface: node 'h1' has "
                                                                       "no interface 'eth7'"),
    ("{t: 1, link: bare, set: {rate: 5mbit}}", "events[0].set.rate: link 'bare' has no rate from 'h1', so there is "
                                               "no htb class to change"),
    ("{t: 1, link: primary, from: r1, blackhole: on}", "events[0].from: node 'r1' is not an end of link 'primary'"),
    ("{t: 1, link: primary, state: sideways}", "events[0].state: state 'sideways' is not down or up"),
    ("{t: 1, link: primary, state: down, blackhole: on}", "events[0]: an event needs exactly one action"),
    ("{link: primary, state: down}", "events[0]: event has no time"),
    ("{t: 1, node: h1, limits: {subflows: 9}}", "events[0].limits.subflows: subflows 9 is outside"),
    ("{t: 1, link: primary, set: {jitter: 20ms, delay: 0ms}}", "events[0].set.jitter: jitter without delay"),
])
def test_bad_events_fail_before_anything_starts_naming_file_line_field_and_fix(event: str, expected: str):
    with pytest.raises(TopologyError) as caught:
        topology = topo(f"  - {event}\n")
        plan_events(topology, make_plan(topology))
    text = str(caught.value)
    assert expected in text, text
    assert "(fix: " in text and "\n" not in text


def test_a_rate_set_changes_the_htb_class_with_every_parameter_and_leaves_the_leaf():
    _, steps = steps_of("  - {t: 4, link: primary, set: {rate: 5mbit}}\n")
    assert steps == [(4.0, "tc", "class change dev eth0 parent 1: classid 1:1 htb rate 5000000bit ceil 5000000bit "
                                 "burst 3125 cburst 3125 quantum 62500")]


def test_a_delay_set_keeps_loss_and_queue_and_rate():
    """qdisc change ... netem resets what it does not name: the planner names all of it."""
    _, steps = steps_of("  - {t: 2, link: primary, from: h1, set: {delay: 50ms}}\n"
                        "  - {t: 3, link: primary, from: h1, set: {rate: 2mbit}}\n"
                        "  - {t: 4, link: primary, from: h1, set: {loss: 0%}}\n")
    assert steps == [
        (2.0, "tc", "qdisc change dev eth0 parent 1:1 handle 10: netem delay 50000us loss 1% limit 40"),
        (3.0, "tc", "class change dev eth0 parent 1: classid 1:1 htb rate 2000000bit ceil 2000000bit burst 3028 "
                    "cburst 3028 quantum 25000"),
        (4.0, "tc", "qdisc change dev eth0 parent 1:1 handle 10: netem delay 50000us limit 40"),
    ]
    topology = topo("  - {t: 2, link: primary, from: h1, set: {delay: 50ms}}\n")
    assert steps_of("  - {t: 2, link: primary, from: h1, set: {delay: 50ms}}\n", node="h2")[1] == []


def test_a_loss_model_set_changes_the_leaf_needs_netem_and_is_restored():
    plan, steps = steps_of("  - {t: 2, link: primary, from: h1, set: {loss: {model: gemodel, p: 5%, r: 50%}}}\n"
                           "  - {t: 4, link: primary, from: h1, set: {loss: 2%}}\n")
    assert steps == [
        (2.0, "tc", "qdisc change dev eth0 parent 1:1 handle 10: netem delay 10000us loss gemodel 5% 50% 100% 0% "
                    "limit 40"),
        (4.0, "tc", "qdisc change dev eth0 parent 1:1 handle 10: netem delay 10000us loss 2% limit 40"),
    ]
    assert [(need.feature, need.field) for need in plan.kernel_needs] == [("netem", "events[0].set.loss"),
                                                                          ("netem", "events[1].set.loss")]
    _, modelled = steps_of("  - {t: 2, link: primary, from: h1, set: {loss: {model: state, p13: 1%}}}\n")
    assert "loss state 1% 99% 0% 100% 0%" in modelled[0][2]
    topology = topo("  - {t: 2, link: primary, from: h1, set: {loss: {model: state, p13: 1%}}}\n")
    restored = [" ".join(s.args) for s in plan_events(topology, make_plan(topology)).schedules["h1"].restore]
    assert "qdisc change dev eth0 parent 1:1 handle 10: netem delay 10000us loss 1% limit 40" in restored, restored


def test_an_egress_that_gets_delay_events_has_a_netem_leaf_from_up():
    topology = topo("  - {t: 2, link: backup, set: {delay: 30ms, jitter: 5ms}}\n")
    lines = make_plan(topology).nodes["h1"].tc_lines()
    assert "qdisc add dev eth1 parent 1:1 handle 10: netem limit 34" in lines
    _, steps = steps_of("  - {t: 2, link: backup, set: {delay: 30ms, jitter: 5ms}}\n")
    assert steps == [(2.0, "tc", "qdisc change dev eth1 parent 1:1 handle 10: netem delay 30000us 5000us "
                                 "distribution normal limit 34")]


def test_a_queue_set_on_a_pfifo_leaf_changes_only_its_limit():
    _, steps = steps_of("  - {t: 1, link: backup, set: {queue: 100}}\n")
    assert steps == [(1.0, "tc", "qdisc change dev eth1 parent 1:1 handle 10: pfifo limit 100")]


def test_down_and_up_both_ends_and_up_puts_the_routes_back():
    plan, steps = steps_of("  - {t: 3, link: primary, state: down}\n  - {t: 6, link: primary, state: up}\n")
    assert steps == [(3.0, "ip", "link set dev eth0 down"), (6.0, "ip", "link set dev eth0 up"),
                     (6.0, "ip", "route replace 10.9.0.0/24 via 10.0.0.2 dev eth0")]
    assert [(s.t, " ".join(s.args)) for s in plan.schedules["h2"].steps] == [(3.0, "link set dev eth0 down"),
                                                                              (6.0, "link set dev eth0 up")]
    assert "\tip\tlink\tset\tdev\teth0\tup\n" in restore_text(plan.schedules["h1"])
    assert plan.state_at("h1", "eth0", 4.0).up is False and plan.state_at("h2", "eth0", 7.0).up is True


def test_blackhole_drops_on_both_egresses_with_clsact_added_before_t0_and_removed_after():
    plan, steps = steps_of("  - {t: 2, link: backup, blackhole: on}\n  - {t: 5, link: backup, blackhole: off}\n")
    assert steps == [(2.0, "tc", "filter replace dev eth1 egress " + " ".join(DROP_FILTER)),
                     (5.0, "tc", "filter del dev eth1 egress pref 1 handle 1 bpf")]
    h2 = plan.schedules["h2"]
    assert [" ".join(s.args) for s in h2.setup] == ["qdisc replace dev eth1 clsact"]
    assert [" ".join(s.args) for s in h2.restore] == ["qdisc del dev eth1 clsact"]
    assert plan.kernel_needs[0].feature == "blackhole" and plan.kernel_needs[0].line == 16
    assert schedule_text(h2).splitlines()[1] == "\t".join(["2000000", "e0.0", "tc", "filter", "replace", "dev", "eth1",
                                                           "egress", *DROP_FILTER])


def test_endpoint_changes_use_ids_and_backup_flips_send_mp_prio():
    _, steps = steps_of("  - {t: 1, node: h1, endpoint: {interface: eth1, flags: [subflow, backup]}}\n"
                        "  - {t: 2, node: h1, endpoint: {interface: eth1, flags: [signal]}}\n"
                        "  - {t: 3, node: h1, endpoint: {interface: eth0, flags: [subflow]}}\n"
                        "  - {t: 4, node: h1, endpoint: {interface: eth1, remove: true}}\n"
                        "  - {t: 5, node: h1, limits: {add_addr_accepted: 3}}\n")
    assert steps == [
        (1.0, "ip", "mptcp endpoint change id 1 backup"),
        (2.0, "ip", "mptcp endpoint delete id 1 10.0.1.1"),
        (2.0, "ip", "mptcp endpoint add 10.0.1.1 dev eth1 id 1 signal"),
        (3.0, "ip", "mptcp endpoint add 10.0.0.1 dev eth0 id 2 subflow"),
        (4.0, "ip", "mptcp endpoint delete id 1 10.0.1.1"),
        (5.0, "ip", "mptcp limits set subflows 2 add_addr_accepted 3"),
    ]


def test_snapshots_come_before_each_event_time_on_every_agent_node():
    _, steps = steps_of("  - {t: 3, link: primary, state: down}\n", node="h2", snap_nodes=["h1", "h2"])
    assert steps[0] == (2.95, "snap", "3.000") and steps[1][0] == 3.0


def test_a_delay_event_on_a_kernel_without_netem_fails_in_one_line_before_start():
    topology = topo("  - {t: 2, link: backup, set: {delay: 30ms}}\n")
    needs = plan_events(topology, make_plan(topology)).kernel_needs
    probe = parse_probe("kernel=6.18\nmptcp=yes\nip_mptcp=yes\nnetem=no\nhtb=yes\nblackhole=yes\n")
    with pytest.raises(KernelFeatureError) as caught:
        require_for_events(probe, needs, topology.source)
    assert str(caught.value).startswith("ev.yaml:16: events[0].set.delay: backup set delay=30ms: the Docker host's "
                                        "kernel (6.18) has no netem qdisc (sch_netem), so delay cannot change (fix:")


# -- traces ---------------------------------------------------------------------------------------


def test_mahimahi_is_binned_into_100ms_windows_and_wraps():
    # 10 packets in each of the first two 100 ms windows, none in the third, 5 in the fourth
    stamps = [10 * i + 1 for i in range(20)] + [301, 321, 341, 361, 381, 400]
    segments, period = parse_mahimahi("\n".join(map(str, stamps)))
    assert period == 0.4
    assert segments == ((0.0, 1_200_000), (0.2, MIN_TRACE_RATE), (0.3, 720_000))


def test_csv_trace_steps_and_units():
    segments, period = parse_csv("time,rate\n0,10mbit\n1,2000000\n2,2mbit\n3,10mbit\n")
    assert segments == ((0.0, 10_000_000), (1.0, 2_000_000), (3.0, 10_000_000)) and period == 4.0


def test_a_traced_link_gets_one_class_change_per_rate_change_every_100ms(tmp_path: Path):
    (tmp_path / "t.csv").write_text("0,8mbit\n0.25,4mbit\n0.5,4mbit\n")
    (tmp_path / "lab.yaml").write_text(BASE.replace("rate: 20mbit}", "egress: {h2: {trace: t.csv}}}")
                                       .replace("duration: 10", "duration: 1") + "  []\n")
    topology = validate(load_topology(tmp_path / "lab.yaml"))
    assert topology.link("backup").egress["h2"].rate == 8_000_000  # the peak, outside runs
    plan = plan_events(topology, make_plan(topology))
    rates = [(s.t, s.args[s.args.index("rate") + 1]) for s in plan.schedules["h2"].steps]
    # 0.75 s period: 8, 8, (8+4)/2 = 6 (0.2-0.3 straddles 0.25), 4, 4, 4, 4, then wrapping: 8 ...
    assert rates == [(0.0, "8000000bit"), (0.2, "6000000bit"), (0.3, "4000000bit"), (0.7, "6000000bit"),
                     (0.8, "8000000bit")]
    assert plan.schedules["h1"].steps == []


def test_shipped_examples_validate_and_plan():
    for name in ("mptcp-failover.yaml", "mptcp-handover-traces.yaml"):
        topology = validate(load_topology(TOPOLOGIES / name))
        plan = plan_events(topology, make_plan(topology, drop_impairments=True))
        assert not plan.empty


def test_counter_snapshots_read_both_nstat_and_proc_net_netstat():
    from mptcpdock.report.events import counter_deltas, parse_nstat

    proc = ("TcpExt: SyncookiesSent TCPTimeouts\nTcpExt: 0 3\n"
            "MPTcpExt: MPCapableSYNRX MPJoinSynRx SubflowStale\nMPTcpExt: 1 2 0\n")
    before = parse_nstat(proc)
    assert before == {"TcpExtSyncookiesSent": 0, "TcpExtTCPTimeouts": 3, "MPTcpExtMPCapableSYNRX": 1,
                      "MPTcpExtMPJoinSynRx": 2, "MPTcpExtSubflowStale": 0}
    after = parse_nstat("MPTcpExtMPCapableSYNRX  1  0.0\nMPTcpExtMPJoinSynRx  5  0.0\nMPTcpExtSubflowStale 1 0.0\n")
    deltas = counter_deltas(before, after)
    assert deltas["MPJoinSynRx"] == 3 and deltas["SubflowStale"] == 1
    assert deltas["MPPrioTx"] == "unsupported"  # not in this kernel's list: never reported as 0


def test_a_queue_set_on_an_aqm_leaf_changes_that_leaf_and_keeps_its_kind():
    topology = validate(load_topology_text(BASE.replace("rate: 20mbit}", "rate: 20mbit, qdisc: fq_codel}")
                                           + "  - {t: 1, link: backup, from: h1, set: {queue: 300}}\n", source="ev.yaml"))
    plan = plan_events(topology, make_plan(topology, drop_impairments=True))
    assert [" ".join(s.args) for s in plan.schedules["h1"].steps] == [
        "qdisc change dev eth1 parent 1:1 handle 10: fq_codel limit 300"]
