"""Events on a netem kernel (the VM-host tier, ``pytest -m vmhost``; see tests/vmhost_support.py):
a ``set:`` event changes only what it names, checked with ping during the run.

The lab has two direct links between h1 and h2: ``probe`` (10 Mbit/s, 20 ms each way) carries
only ping, ``bulk`` a light iperf3 flow (a run needs one; it queues nothing on ``probe`` and
keeps the VM's emulated CPU, whose load adds milliseconds to every round trip, nearly idle).
Statistic: the 10th percentile of each window's RTTs, since netem's delay is constant and the
emulator only ever adds to it (its hiccups lift the median by several ms under load). Events:

* t=4 s, ``probe`` both ways: ``set: {rate: 5mbit}``. The delay must stay: the RTT
  after it is the RTT before plus the 98-byte probe's longer serialisation at 5 Mbit/s (each
  way: 98 x 8 bit / 5 Mbit/s - the same at 10 Mbit/s = 0.078 ms), within 1 ms.
* t=8 s, ``probe`` from h1: ``set: {delay: 50ms}``. The RTT grows by exactly 30 ms (50 - 20,
  one direction), within 2 ms; the rate stays 5 Mbit/s (``tc class show`` in h1 after it).

ping -D timestamps every reply with the VM kernel's clock, which is also the run's (t0 is
fixed on the Docker host's clock), so each reply falls in its window by summary.json's t0.
Windows leave 1.5 s after each event: in the software-emulated VM an agent wakes 0.1-0.3 s
late and a ``tc`` command takes up to 0.9 s (both reported as figures, and in events.log).
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

vmhost_support = pytest.importorskip("vmhost_support", reason="the VM tier's support (tests/vmhost_support.py) "
                                                              "is not in this tree")
from vmhost_support import Cli, Recorder, frame_time_ms, results_dir_of, summary_of, write_topology  # noqa: E402

pytest_plugins = ["vmhost_support"]
pytestmark = [pytest.mark.vmhost, pytest.mark.slow]

TOPOLOGY = {
    "name": "vmev",
    "nodes": {"h1": {}, "h2": {}},
    "links": [
        {"name": "probe", "endpoints": ["h1:probe0", "h2:probe0"], "subnet": "10.21.0.0/24",
         "rate": "10mbit", "delay": "20ms"},
        {"name": "bulk", "endpoints": ["h1:bulk0", "h2:bulk0"], "subnet": "10.22.0.0/24", "rate": "10mbit"},
    ],
    "flows": [{"name": "bulk", "src": "h1", "dst": "h2", "dst_address": "10.22.0.2", "duration": 14,
               "protocol": "tcp", "bitrate": "200kbit"}],  # a light flow: the emulated CPU stays idle
    "events": [
        {"t": 4, "link": "probe", "set": {"rate": "5mbit"}},
        {"t": 8, "link": "probe", "from": "h1", "set": {"delay": "50ms"}},
    ],
}
PROBE_DIR = "/tmp/vmev-probes"
#: args: DIR. ping every 50 ms with a timestamp per reply, and the htb class of probe0 every
#: 0.5 s, both into DIR until PROBES_STOP.
PROBES_START = r"""dir=$1; mkdir -p "$dir"
ping -D -n -i 0.05 10.21.0.2 > "$dir/ping.txt" 2>&1 &
echo $! > "$dir/ping.pid"
while :; do tc class show dev probe0; sleep 0.5; done > "$dir/classes.txt" 2>&1 &
echo $! > "$dir/classes.pid"
"""
#: args: DIR. Stops both probes; prints ping's output, then '%%% classes' and the class readings.
PROBES_STOP = r"""dir=$1
kill -INT "$(cat "$dir/ping.pid")"; kill "$(cat "$dir/classes.pid")"
while kill -0 "$(cat "$dir/ping.pid")" 2>/dev/null; do sleep 0.1; done
cat "$dir/ping.txt"; echo "%%% classes"; cat "$dir/classes.txt"
"""
REPLY = re.compile(r"^\[(\d+\.\d+)\] .* time=([\d.]+) ms")


def test_a_set_event_changes_only_what_it_names_ping_shows_it(cli: Cli, figures: Recorder, tmp_path: Path):
    topology = write_topology(tmp_path / "vmev.yaml", TOPOLOGY)
    with cli.lab(topology, "vmev") as lab:
        # Both probes run inside h1 in the background for as long as the run takes (the run's
        # t0 comes some 20-45 s after its start on the emulated VM), started and read by one
        # exec each: an exec per reading would keep the guest's CPU busy and delay the run.
        cli.exec(lab, "h1", "sh", "-c", PROBES_START, "probes", PROBE_DIR)
        try:
            output = cli.run("run", str(topology), "--lab", lab, "--results", str(tmp_path / "results"),
                             "--no-plots").stdout
        finally:
            probes = cli.exec(lab, "h1", "sh", "-c", PROBES_STOP, "probes", PROBE_DIR)
        restored = cli.exec(lab, "h1", "tc", "class", "show", "dev", "probe0")
    ping, _, classes = probes.partition("%%% classes\n")
    rates = re.findall(r"^class htb 1:1 .*? rate (\S+) ", classes, flags=re.M)
    summary = summary_of(results_dir_of(output))
    t0 = summary["t0"]
    replies = [(float(m[1]) - t0, float(m[2])) for m in map(REPLY.match, ping.splitlines()) if m]

    def low(start: float, end: float) -> float:
        window = sorted(rtt for when, rtt in replies if start <= when < end)
        assert len(window) >= 20, f"{len(window)} replies in [{start}, {end}) s"
        return statistics.quantiles(window, n=10)[0]

    before, after_rate, after_delay = low(1.0, 4.0), low(5.5, 8.0), low(9.5, 14.0)
    serialisation = 2 * (frame_time_ms(5e6) - frame_time_ms(10e6))
    figures.add("RTT before (10 Mbit/s, 20 ms each way)", before, "ms", expected=40.0, bound="reference")
    figures.add("RTT after set rate=5mbit", after_rate, "ms", expected=before + serialisation,
                bound="within 1 ms (delay kept)", ok=abs(after_rate - before - serialisation) <= 1.0)
    figures.add("RTT after set delay=50ms from h1", after_delay, "ms", expected=after_rate + 30.0,
                bound="within 2 ms", ok=abs(after_delay - after_rate - 30.0) <= 2.0)
    assert before >= 40.0
    assert abs(after_rate - before - serialisation) <= 1.0, (before, after_rate)
    assert abs(after_delay - after_rate - 30.0) <= 2.0, (after_rate, after_delay)
    # While the run went, the class went from 10 to 5 Mbit/s (the event at t=4; the delay event
    # at t=8 kept it); after the run, the topology's 10 Mbit/s is back (the restore step).
    changes = [rate for i, rate in enumerate(rates) if i == 0 or rate != rates[i - 1]]
    assert changes[:2] == ["10Mbit", "5Mbit"], rates
    assert " rate 10Mbit " in restored, restored
    applied = summary["events"]["occurrences"]
    assert all(e["status"] == "applied" for e in applied), applied
    lag = summary["events"]["scheduling"]["start_lag"]
    done = summary["events"]["scheduling"]["done_lag"]
    figures.add("event scheduling error in the VM (start lag, median)", lag["median_ms"], "ms",
                bound="reported: software emulation wakes late", note=f"p95 {lag['p95_ms']} ms")
    figures.add("event command done after its time in the VM (median)", done["median_ms"], "ms",
                bound="reported", note=f"p95 {done['p95_ms']} ms")
