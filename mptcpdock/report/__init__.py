"""Stage 5, what a run's files say: parsers for what the nodes wrote (monitor logs, ss
samples, iperf3 JSON), the summary of a results directory, its table, and the plots.

Works from files alone (``mptcpdock report DIR`` needs no Docker). May import
:mod:`mptcpdock.plan` (the checklist), :mod:`mptcpdock.topology`, :mod:`mptcpdock.errors` and
the package root; never :mod:`mptcpdock.runtime` (a sibling) or anything above.
"""
