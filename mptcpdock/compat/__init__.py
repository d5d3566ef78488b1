"""Compatibility layers that let scripts written for other tools build mptcpdock labs."""
