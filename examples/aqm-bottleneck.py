# SPDX-License-Identifier: GPL-2.0-only
# A NeST script (NeST 0.4.4's API): two TCP flows share a 10 Mbit/s bottleneck whose queue is
# fq_codel, the sender asks for ECN, and the experiment records the bottleneck qdisc's counters.
#
#   h1 ---- r1 ---- h2        r1 -> h2: 10 Mbit/s, fq_codel (the AQM keeps the queue short
#                             and shares it between the flows; with ECN it marks, not drops)
#                             h1 <-> r1: 100 Mbit/s, 10 ms each way (a 20 ms round trip)
#
# mptcpdock runs it unchanged but for the imports (examples/aqm-bottleneck.py), on Docker.

from mptcpdock.compat.nest.topology import *
from mptcpdock.compat.nest.experiment import *
from mptcpdock.compat.nest.topology.network import Network
from mptcpdock.compat.nest.topology.address_helper import AddressHelper

h1 = Node("h1")
h2 = Node("h2")
r1 = Router("r1")

(eth1, etr1a) = connect(h1, r1, network=Network("10.0.1.0/24"))
(etr1b, eth2) = connect(r1, h2, network=Network("10.0.2.0/24"))
AddressHelper.assign_addresses()

h1.add_route("DEFAULT", eth1)
h2.add_route("DEFAULT", eth2)

eth1.set_attributes("100mbit", "10ms")
etr1a.set_attributes("100mbit", "10ms")
eth2.set_bandwidth("10mbit")
# The bottleneck: 10 Mbit/s, fq_codel as its queue
etr1b.set_bandwidth("10mbit")
etr1b.set_qdisc("fq_codel")

# h1's connections ask for ECN (h2 accepts it by the kernel's default)
h1.configure_tcp_param("ecn", "1")

flow1 = Flow(h1, h2, eth2.get_address(), 0, 20, 1)
flow2 = Flow(h1, h2, eth2.get_address(), 0, 20, 1)

exp = Experiment("aqm-bottleneck")
exp.add_tcp_flow(flow1, tool="iperf3")
exp.add_tcp_flow(flow2, tool="iperf3")
exp.require_qdisc_stats(etr1b)
exp.run()
