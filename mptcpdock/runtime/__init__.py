"""Stage 3, a plan applied to Docker and everything that touches the engine: the Docker
SDK wrapper (``docker_api``), bring-up and teardown (``apply``), the lab life cycle the CLI,
the API and the NeST layer share (``lab``), the kernel probe, the node image, the saved
lab state (:class:`~mptcpdock.runtime.state.LabState`), the command trace, and what a running
node's kernel really routes (``kernel_routes``).

The only stage that imports the Docker SDK. May import :mod:`mptcpdock.plan`,
:mod:`mptcpdock.topology`, :mod:`mptcpdock.errors` and the package root; never
:mod:`mptcpdock.report` (a sibling) or anything above.
"""
