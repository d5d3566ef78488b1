"""Stage 1, the description of a lab: the model, the YAML loader and writer, validation
(which fills in every default), and the units people write ('10mbit', '10ms', '1%').

Pure: no Docker, no files but the YAML being read. May import only :mod:`mptcpdock.errors`
and the package root; every other stage imports this one.
"""
