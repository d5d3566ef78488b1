"""Compatibility layers that let scripts written for other tools build mptcpdock labs.

They sit above the core: they may import :mod:`mptcpdock.api` and every stage below it,
and nothing in the core imports them (per-script state is keyed on
:func:`mptcpdock.api.current_script`, never reset from the core).
"""
