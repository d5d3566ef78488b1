"""NeST's ``config.set_value`` / ``get_value``: same keys, same type checks.

What each key does here:

* ``show_mptcp_checklist``: ``Experiment.run()`` prints the MPTCP checklist before traffic.
* ``log_level``: "trace" in any case (NeST only accepts "TRACE") writes ``commands.sh`` in the
  current directory, as NeST does; the results directory always holds one as well.
* ``delete_namespaces_on_termination``: False keeps the lab up after the run.
* ``assign_random_names``: accepted; names are always the real ones here (containers and
  interfaces carry the names the script gives), so it changes nothing.
* The other NeST keys are accepted and have no effect (no plots/progress options here).
"""

from __future__ import annotations

import logging
from typing import Any

from ._scope import PerScript

DEFAULTS: dict[str, Any] = {
    "assign_random_names": True,
    "default_bandwidth": "1024mbit",
    "delete_namespaces_on_termination": True,
    "disable_dad": True,
    "log_level": "INFO",
    "plot_results": True,
    "readme_in_stats_folder": True,
    "show_progress_bar": True,
    "show_tcp_module_parameter_confirmation": True,
    "routing_suite": "frr",
    "routing_logs": False,
    "mpeg_dash_delete_encoded_chunks_on_termination": False,
    "show_mptcp_checklist": False,
}
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: This program's values (each script an export runs starts from the defaults).
_values: PerScript[dict[str, Any]] = PerScript(lambda: dict(DEFAULTS))


def set_value(parameter: str, value: Any) -> None:
    """Change a config value for this program (NeST's rules: known keys, same type)."""
    if parameter not in DEFAULTS:
        raise ValueError(f"The given config parameter {parameter} does not exist "
                         f"(known: {', '.join(sorted(DEFAULTS))})")
    expected = type(DEFAULTS[parameter])
    if not isinstance(value, expected):
        raise ValueError(f"The value of config '{parameter}' should be of type {expected}, "
                         f"but got value '{value}' of type {type(value)}")
    if parameter == "log_level":
        value = value.upper()
        if value not in LOG_LEVELS:
            raise ValueError(f"log_level {value!r} is not one of {', '.join(LOG_LEVELS)} (any case)")
        logging.getLogger("mptcpdock").setLevel(logging.DEBUG if value == "TRACE" else value)
    _values.get()[parameter] = value


def get_value(parameter: str) -> Any:
    if parameter not in DEFAULTS:
        raise ValueError(f"The given config parameter {parameter} does not exist")
    return _values.get()[parameter]


def trace_enabled() -> bool:
    return _values.get()["log_level"] == "TRACE"


def reset() -> None:
    _values.clear()
