"""``from mptcpdock.compat.nest.experiment import *``: NeST's Flow and Experiment."""

from .experiment import Experiment, Flow

__all__ = ["Experiment", "Flow"]
