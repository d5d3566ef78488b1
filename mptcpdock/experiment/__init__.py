"""Stage 4, running a lab's flows: checking the inputs, starting monitors and samplers,
scheduling iperf3 servers and clients (and the single-path baselines), stopping them,
copying every node's files out, and writing the results directory (``runner``), with the
fixed shell scripts that run inside the nodes (``node_scripts``).

May import :mod:`mptcpdock.report` (to write the summary and plots), :mod:`mptcpdock.runtime`,
:mod:`mptcpdock.plan`, :mod:`mptcpdock.topology`, :mod:`mptcpdock.errors` and the package
root; never the API, the NeST layer or the CLI.
"""
