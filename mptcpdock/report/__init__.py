"""Stage 5, what a run's files say: parsers for what the nodes wrote (monitor logs, ss
samples, iperf3 JSON: ``parsers``), the results directory's layout (``layout``), the typed
records of summary.json (``records``), the summary computed from the files (``summary``),
its table (``table``) and the plots (``plots``).

Works from files alone (``mptcpdock report DIR`` needs no Docker). May import
:mod:`mptcpdock.plan` (the checklist), :mod:`mptcpdock.topology`, :mod:`mptcpdock.errors` and
the package root; never :mod:`mptcpdock.runtime` (a sibling) or anything above.
"""
