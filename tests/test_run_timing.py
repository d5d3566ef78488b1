"""t0's lead, the baselines' start and the flows' deadlines scale with the engine's exec
latency (pure: a Run is built by hand, nothing runs). On a software-emulated VM engine an
exec takes a second or more; with the fixed 1 s lead and 10 s of slack, agents received t0
late and a baseline that started late was stopped at its planned deadline while it ran."""

from __future__ import annotations

from pathlib import Path

from mptcpdock.experiment.runner import (CONNECT_TIMEOUT_MS, EARLY_CHECK_S, FINISH_GRACE, LEAD_SECONDS, Run,
                                         ScheduledFlow, _deadline, _due_for_check, _lead)
from mptcpdock.topology.model import Flow, Topology


def a_run(slowest_exec: float, agents: int = 2) -> Run:
    run = Run(lab="t", topology=Topology(name="t"), state=None, results_dir=Path("."), node_dir="/tmp/x",  # type: ignore[arg-type]
              sample_period=1.0, monitors_requested=[], monitors_added=[], agents=[f"n{i}" for i in range(agents)],
              mptcp_tool="mptcpize")
    run.saw_exec(slowest_exec / 2)
    run.saw_exec(slowest_exec)
    run.saw_exec(slowest_exec / 3)  # the slowest is kept
    return run


def test_the_lead_grows_with_the_slowest_exec():
    local, vm = a_run(0.03), a_run(1.5)
    assert local.slowest_exec == 0.03 and vm.slowest_exec == 1.5
    # one round for the clients (no events: no t0 files) and one to spare
    assert abs(_lead(local, flows=1) - (LEAD_SECONDS + 0.05 + 2 * 0.03)) < 1e-9
    assert abs(_lead(vm, flows=1) - (LEAD_SECONDS + 0.05 + 2 * 1.5)) < 1e-9
    assert _lead(vm, flows=9) - _lead(vm, flows=8) == 1.5  # a ninth client: one more round of 8
    assert vm.engine_margin(2) == 3.0 and local.engine_margin(2) == LEAD_SECONDS


def test_the_deadline_counts_from_a_late_launch_and_the_engine_latency():
    run = a_run(1.0)
    run.t0, run.clock_offset = 1000.0, 0.5
    item = ScheduledFlow(Flow(src="h1", dst="h2", start=2, duration=12))
    slack = FINISH_GRACE + CONNECT_TIMEOUT_MS / 1000 + 3 * 1.0
    assert _deadline(run, item) == 1000 + 2 + 12 + slack  # not launched yet: the planned start
    item.launched_at = 1000.0  # before its start (host clock 1000.5): the planned start still
    assert _deadline(run, item) == 1000 + 2 + 12 + slack
    item.launched_at = 1009.5  # launched 8 s late (host clock 1010): its duration counts from there
    assert _deadline(run, item) == 1010 + 12 + slack


def test_a_flows_exec_is_asked_about_rarely_until_its_planned_end():
    """Each ask costs the engine CPU (12 ms of dockerd on the emulated VM host, 5 a second per
    flow before): every EARLY_CHECK_S while the flow should run, every tick from 1 s before
    its planned end on."""
    run = a_run(0.1)
    run.t0 = 1000.0
    item = ScheduledFlow(Flow(src="h1", dst="h2", start=2, duration=10))
    item.checked_at = 1003.0
    assert not _due_for_check(run, item, 1003.0 + EARLY_CHECK_S - 0.1)
    assert _due_for_check(run, item, 1003.0 + EARLY_CHECK_S)  # a client that failed early is still seen
    item.checked_at = 1010.9
    assert _due_for_check(run, item, 1011.0)  # 1 s before the planned end (1012): every tick
    assert _due_for_check(run, item, 1013.0)
