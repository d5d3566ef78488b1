"""Which Docker engine mptcpdock talks to, chosen the way the docker CLI chooses it.

Precedence: ``--context NAME`` > ``DOCKER_HOST`` > ``DOCKER_CONTEXT`` > the ``currentContext``
of the docker CLI's config.json (``$DOCKER_CONFIG`` or ``~/.docker``) > the default socket.
``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH`` apply to ``DOCKER_HOST`` and the default context
(as in the CLI); a named context carries its own TLS material. Contexts are read by the
Docker SDK (:class:`docker.context.ContextAPI`).

Pure: environment and files in, an :class:`Engine` out; nothing here talks to an engine
(``docker_api`` does, with the engine resolved here). :class:`EngineIdentity` is what a lab's
state records about the engine it lives on, and :func:`mismatch` the one line refusing to act
on a lab through another engine.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from docker.context import ContextAPI
from docker.context.config import get_current_context_name
from docker.errors import DockerException
from docker.tls import TLSConfig
from docker.utils import kwargs_from_env
from docker.utils.config import find_config_file

from ..errors import MptcpdockError

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_CONTEXT = "default"


class EngineChoiceError(MptcpdockError):
    """The engine asked for (a context) cannot be resolved."""


class EngineMismatch(MptcpdockError):
    """A command reaches another engine than the one its lab lives on."""


@dataclass(frozen=True)
class Engine:
    """The engine to talk to: its context name ('default' for DOCKER_HOST and the default
    socket), its URL, and what chose it (for messages)."""

    name: str
    host: str
    chosen_by: str
    tls: TLSConfig | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        return f"{self.host} ({self.chosen_by})"

    def selector(self) -> str:
        """How to reach this engine again from a shell: the option or the variable."""
        return f"--context {self.name}" if self.name != DEFAULT_CONTEXT else f"DOCKER_HOST={self.host}"

    def cli_args(self) -> list[str]:
        """The docker CLI's global options that reach this engine (TLS variables are inherited)."""
        return ["--context", self.name] if self.name != DEFAULT_CONTEXT else ["--host", self.host]


@dataclass(frozen=True)
class EngineIdentity:
    """Which engine a lab lives on: the engine's own ID (``docker info``'s ID, the same
    whichever URL reaches it), the context name and URL it was reached by, its API version."""

    id: str
    name: str
    host: str
    api_version: str
    chosen_by: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EngineIdentity":
        return cls(**{key: str(data.get(key) or "") for key in cls.__dataclass_fields__})

    def same_engine(self, other: "EngineIdentity") -> bool:
        if self.id and other.id:
            return self.id == other.id
        return self.host == other.host  # an engine without an ID: the URL is all there is

    def selector(self) -> str:
        return Engine(self.name, self.host, self.chosen_by).selector()

    def command(self) -> str:
        """The start of a command line that reaches this engine."""
        selector = self.selector()
        return f"mptcpdock {selector}" if selector.startswith("--") else f"{selector} mptcpdock"

    def describe(self) -> str:
        short = self.id[:14] + ("..." if len(self.id) > 14 else "")
        return f"{self.name} ({self.host}, ID {short or '?'})"


def resolve_engine(context: str | None = None, environ: Mapping[str, str] | None = None) -> Engine:
    """The engine mptcpdock talks to: ``context`` is the ``--context`` option (or None)."""
    env = os.environ if environ is None else environ
    if context:
        return _context_engine(context, "--context", env)
    if env.get("DOCKER_HOST"):
        return _default_engine(env, "DOCKER_HOST")
    if env.get("DOCKER_CONTEXT"):
        return _context_engine(env["DOCKER_CONTEXT"], "DOCKER_CONTEXT", env)
    current = _current_context(env)
    if current and current != DEFAULT_CONTEXT:
        return _context_engine(current, f"currentContext of {_config_file(env)}", env)
    return _default_engine(env, "default socket")


def _default_engine(env: Mapping[str, str], chosen_by: str) -> Engine:
    """The default context: DOCKER_HOST when set, else the local socket; TLS from the environment."""
    try:
        params = kwargs_from_env(environment=dict(env))
    except DockerException as exc:  # DOCKER_TLS_VERIFY / DOCKER_CERT_PATH naming missing files
        where = env.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".docker")
        raise EngineChoiceError(f"TLS for the Docker engine ({chosen_by}): {str(exc).split('. ')[0]} (fix: put "
                                f"ca.pem, cert.pem and key.pem in {where}, point DOCKER_CERT_PATH at them, or unset "
                                "DOCKER_TLS_VERIFY)") from None
    host = params.get("base_url") or DEFAULT_HOST
    if chosen_by not in ("DOCKER_HOST", "default socket"):
        chosen_by += " (DOCKER_HOST)" if env.get("DOCKER_HOST") else " (default socket)"
    return Engine(DEFAULT_CONTEXT, host, chosen_by, tls=params.get("tls"))


def _context_engine(name: str, chosen_by: str, env: Mapping[str, str]) -> Engine:
    if name == DEFAULT_CONTEXT:
        return _default_engine(env, f"{chosen_by} {DEFAULT_CONTEXT}")
    where = _config_file(env)
    if not _config_exists(env):
        raise EngineChoiceError(
            f"Docker context {name!r} (from {chosen_by}): there is no {where}, next to which the Docker SDK "
            f"looks for contexts (fix: create it, e.g. echo '{{}}' > {where}, or use DOCKER_HOST=URL instead)")
    try:
        context = ContextAPI.get_context(name)
    except (DockerException, OSError, ValueError, KeyError) as exc:
        raise EngineChoiceError(f"Docker context {name!r} (from {chosen_by}) cannot be read: {exc}") from None
    if context is None:
        raise EngineChoiceError(
            f"no Docker context {name!r} (from {chosen_by}) in {os.path.dirname(where)}/contexts (fix: "
            f"'docker context ls' lists them; create one with 'docker context create {name} "
            "--docker host=ssh://USER@HOST', or use DOCKER_HOST=URL)")
    if not context.Host:
        raise EngineChoiceError(f"Docker context {name!r} (from {chosen_by}) has no Docker endpoint "
                                "(fix: 'docker context inspect' it; give it one with --docker host=URL)")
    return Engine(name, str(context.Host), f"{chosen_by} {name}", tls=context.TLSConfig)


def _config_file(env: Mapping[str, str]) -> str:
    base = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _config_exists(env: Mapping[str, str]) -> bool:
    return os.path.isfile(_config_file(env)) and find_config_file() == _config_file(env)


def _current_context(env: Mapping[str, str]) -> str | None:
    if not os.path.isfile(_config_file(env)):
        return None
    return get_current_context_name()


def mismatch(lab: str, recorded: EngineIdentity | None, current: EngineIdentity) -> str | None:
    """The one-line refusal when ``lab`` lives on another engine than ``current``, else None.
    Labs recorded before engines were recorded (``recorded`` None) pass."""
    if recorded is None or recorded.same_engine(current):
        return None
    return (f"lab {lab!r} lives on Docker engine {recorded.describe()}, but this command reaches "
            f"{current.describe()} (chosen by {current.chosen_by or '?'}); refusing to act on it through another "
            f"engine (fix: {recorded.command()} ..., or unset what chose this one)")


def spec_engine(name: str, host: str | None, context: str | None,
                environ: Mapping[str, str] | None = None) -> Engine | None:
    """The engine a topology's ``engines.NAME`` entry names: its ``host`` URL (with the
    environment's TLS variables, as DOCKER_HOST would have them) or its ``context``; None for an
    entry with neither, which is the engine mptcpdock talks to anyway (the environment's)."""
    env = os.environ if environ is None else environ
    if context:
        return _context_engine(context, f"engines.{name}.context", env)
    if not host:
        return None
    params: dict[str, Any] = {}
    if env.get("DOCKER_TLS_VERIFY") and host.startswith("tcp://"):
        params = kwargs_from_env(environment={**env, "DOCKER_HOST": host})
    return Engine(DEFAULT_CONTEXT, host, f"engines.{name}.host", tls=params.get("tls"))


class OnEngine(str):
    """A container name or exec ID with the engine it lives on (``engine`` None: the
    environment's). A ``str``, so code that passes container names around needs no change; the
    functions of ``docker_api`` that take a container or exec ID send the request to its engine."""

    engine: Engine | None

    def __new__(cls, value: str, engine: Engine | None) -> "OnEngine":
        made = super().__new__(cls, value)
        made.engine = engine
        return made
