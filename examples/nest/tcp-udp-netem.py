# SPDX-License-Identifier: GPL-2.0-only
# A NeST script (NeST 0.4.4's API): a TCP flow and a UDP flow in opposite directions through a
# router, with netem's packet loss, duplication and a delay distribution on the way.
#
#   h1 ---- r1 ---- h2        TCP  h1 -> h2: its data crosses h1 -> r1 (1% duplicated) and the
#                                  10 Mbit/s bottleneck r1 -> h2 (5 ms)
#                             UDP  h2 -> h1 at 3 Mbit/s: it crosses h2 -> r1 (2% lost) and
#                                  r1 -> h1 (5 ms, 1 ms normal jitter); so do TCP's ACKs
#
# Each interface gets one netem call: NeST's calls each run 'tc qdisc change ... netem' with
# only their own parameters, which resets the others (the delay of an earlier set_attributes
# too); set_delay_distribution adds its delay to the interface's earlier one.
#
# mptcpdock runs it unchanged but for the imports (examples/tcp-udp-netem.py), on Docker.

from nest.topology import *
from nest.experiment import *
from nest.topology.network import Network
from nest.topology.address_helper import AddressHelper

h1 = Node("h1")
h2 = Node("h2")
r1 = Router("r1")

(eth1, etr1a) = connect(h1, r1, network=Network("10.0.1.0/24"))
(etr1b, eth2) = connect(r1, h2, network=Network("10.0.2.0/24"))
AddressHelper.assign_addresses()

h1.add_route("DEFAULT", eth1)
h2.add_route("DEFAULT", eth2)

# h1 -> r1: fast; 1% of the packets duplicated
eth1.set_bandwidth("100mbit")
eth1.set_packet_duplication("1%")
# r1 -> h1: 4 ms + 1 ms, with 1 ms of jitter drawn from the normal distribution
etr1a.set_attributes("100mbit", "4ms")
etr1a.set_delay_distribution("1ms", "1ms", "normal")
# r1 -> h2: the bottleneck
etr1b.set_attributes("10mbit", "5ms")
# h2 -> r1: 2% of the packets lost
eth2.set_bandwidth("10mbit")
eth2.set_packet_loss("2%")

# Is h2 reachable? (prints ping's output)
h1.ping(eth2.get_address())

tcp = Flow(h1, h2, eth2.get_address(), 0, 20, 1)
udp = Flow(h2, h1, eth1.get_address(), 0, 20, 1)

exp = Experiment("tcp-udp-netem")
exp.add_tcp_flow(tcp, tool="iperf3")
exp.add_udp_flow(udp, target_bandwidth="3mbit")

# The first 500 packets h2 sends and receives on eth2, into packet_capture/h2-eth2.pcap (after
# the add_*_flow calls: NeST deep-copies each flow with its nodes, and a node capturing holds a
# process that cannot be copied)
h2.capture_packets(interface=eth2, packet_count=500, output_file="h2-eth2.pcap")

exp.run()
