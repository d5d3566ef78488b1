"""``from mptcpdock.compat.nest.experiment import *``: NeST's Flow and Experiment (and its
application classes, which raise: docs/nest.md lists what is not supported)."""

from .experiment import Application, CoapApplication, Experiment, Flow, MpegDashApplication, SipApplication

__all__ = ["Application", "CoapApplication", "Experiment", "Flow", "MpegDashApplication", "SipApplication"]
