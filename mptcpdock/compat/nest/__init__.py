"""NeST's Python API on mptcpdock: a NeST script runs on Docker with only its imports changed.

    from nest.topology import *                  ->  from mptcpdock.compat.nest.topology import *
    from nest.experiment import *                ->  from mptcpdock.compat.nest.experiment import *
    from nest.topology.network import Network    ->  from mptcpdock.compat.nest.topology.network import Network
    from nest.topology.address_helper import AddressHelper
                                                 ->  from mptcpdock.compat.nest.topology.address_helper import AddressHelper
    from nest import config                      ->  from mptcpdock.compat.nest import config

NeST runs every call at once in network namespaces; here the calls build a
:class:`mptcpdock.topology.model.Topology` (through :class:`mptcpdock.api.Lab`, the native API), and
``Experiment.run()`` brings it up, runs it with the experiment runner, writes the results
directory ``mptcpdock run`` writes, and tears the lab down. Where NeST and mptcpdock differ,
``docs/nest.md`` says how and why.
"""
