"""Which engine mptcpdock talks to, and what happens when a lab lives on another one or the
engine goes away: precedence as the docker CLI's, TLS, contexts, the state's engine record,
the one-line refusals and the one-line 'engine went away' errors. No Docker needed: contexts
are written with the SDK into a private DOCKER_CONFIG, engines are faked where one must answer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import requests
from docker.errors import APIError
from docker.tls import TLSConfig

from mptcpdock.errors import RuntimeFailure
from mptcpdock.runtime import apply, docker_api, lab as lab_api
from mptcpdock.runtime.engine import (DEFAULT_HOST, EngineChoiceError, EngineIdentity, EngineMismatch, mismatch,
                                      resolve_engine)
from mptcpdock.runtime.state import LabState, NodeState, save_state, state_path

LOCAL = EngineIdentity(id="AAAA:BBBB", name="default", host=DEFAULT_HOST, api_version="1.41", chosen_by="default socket")
VM = EngineIdentity(id="CCCC:DDDD", name="default", host="tcp://127.0.0.1:2375", api_version="1.47",
                    chosen_by="DOCKER_HOST")
CONTEXT = EngineIdentity(id="EEEE", name="colima", host="unix:///Users/me/.colima/docker.sock", api_version="1.45",
                         chosen_by="--context colima")


@pytest.fixture(autouse=True)
def _fresh_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No engine variables from the caller, a private docker config dir and lab state dir (the
    states these tests write must not show up in other tests' listings), no cached client."""
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path / "state"))
    docker_api.select_engine(None)
    yield
    docker_api.select_engine(None)


def write_contexts(tmp_path: Path, current: str | None, *names: str) -> None:
    """config.json (with currentContext) and one context per name at tcp://NAME:2375, laid out
    as ``docker context create NAME --docker host=tcp://NAME:2375`` lays them out."""
    config = tmp_path / "docker-config"
    config.mkdir(exist_ok=True)
    (config / "config.json").write_text(json.dumps({"currentContext": current} if current else {}))
    for name in names:
        write_context(config, name, f"tcp://{name}:2375")


def write_context(config: Path, name: str, host: str, tls_files: bool = False) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": False}
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}}))
    if tls_files:
        tls = config / "contexts" / "tls" / digest / "docker"
        tls.mkdir(parents=True)
        for file in ("ca.pem", "cert.pem", "key.pem"):
            (tls / file).write_text("-")


# -- precedence ---------------------------------------------------------------------------------

def test_precedence_is_the_docker_clis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    write_contexts(tmp_path, "current", "flag", "envctx", "current")
    monkeypatch.setenv("DOCKER_HOST", "tcp://from-env:2375")
    monkeypatch.setenv("DOCKER_CONTEXT", "envctx")

    flag = resolve_engine("flag")
    assert (flag.name, flag.host, flag.chosen_by) == ("flag", "tcp://flag:2375", "--context flag")
    env_host = resolve_engine()
    assert (env_host.name, env_host.host, env_host.chosen_by) == ("default", "tcp://from-env:2375", "DOCKER_HOST")
    monkeypatch.delenv("DOCKER_HOST")
    env_context = resolve_engine()
    assert (env_context.name, env_context.host, env_context.chosen_by) == ("envctx", "tcp://envctx:2375",
                                                                           "DOCKER_CONTEXT envctx")
    monkeypatch.delenv("DOCKER_CONTEXT")
    current = resolve_engine()
    assert (current.name, current.host) == ("current", "tcp://current:2375")
    assert current.chosen_by.startswith("currentContext of ") and current.chosen_by.endswith("config.json current")
    (tmp_path / "docker-config" / "config.json").write_text("{}")
    default = resolve_engine()
    assert (default.name, default.host, default.chosen_by) == ("default", DEFAULT_HOST, "default socket")


def test_no_docker_config_at_all_means_the_default_socket():
    engine = resolve_engine()
    assert (engine.host, engine.chosen_by, engine.selector()) == (DEFAULT_HOST, "default socket",
                                                                  f"DOCKER_HOST={DEFAULT_HOST}")


def test_context_default_is_docker_host_or_the_socket(monkeypatch: pytest.MonkeyPatch):
    assert resolve_engine("default").host == DEFAULT_HOST
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@vm")
    engine = resolve_engine("default")
    assert (engine.host, engine.chosen_by) == ("ssh://me@vm", "--context default (DOCKER_HOST)")


def test_an_unknown_context_is_one_line_with_the_fix(tmp_path: Path):
    write_contexts(tmp_path, None, "vm")
    with pytest.raises(EngineChoiceError) as caught:
        resolve_engine("nope")
    text = str(caught.value)
    assert "\n" not in text and "no Docker context 'nope' (from --context)" in text
    assert "docker context ls" in text and "DOCKER_HOST=URL" in text


def test_a_context_without_config_json_says_where_the_sdk_looks(tmp_path: Path):
    with pytest.raises(EngineChoiceError) as caught:
        resolve_engine("vm")
    assert "config.json" in str(caught.value) and "echo '{}'" in str(caught.value)


def test_tls_from_docker_tls_verify_and_docker_cert_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    certs = tmp_path / "certs"
    monkeypatch.setenv("DOCKER_HOST", "tcp://vm:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    with pytest.raises(EngineChoiceError) as caught:  # the files are not there yet
        resolve_engine()
    assert "\n" not in str(caught.value) and f"put ca.pem, cert.pem and key.pem in {certs}" in str(caught.value)
    certs.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).write_text("-")
    engine = resolve_engine()
    assert isinstance(engine.tls, TLSConfig)
    assert engine.tls.cert == (str(certs / "cert.pem"), str(certs / "key.pem"))
    assert engine.tls.verify is True and engine.tls.ca_cert == str(certs / "ca.pem")


def test_a_context_carries_its_own_tls(tmp_path: Path):
    write_contexts(tmp_path, None)
    write_context(tmp_path / "docker-config", "secure", "tcp://vm:2376", tls_files=True)
    engine = resolve_engine("secure")
    assert engine.host == "tcp://vm:2376" and isinstance(engine.tls, TLSConfig)
    assert engine.tls.cert[0].endswith("cert.pem") and engine.tls.verify is True


def test_an_unreachable_ssh_engine_is_one_line(monkeypatch: pytest.MonkeyPatch):
    """ssh:// goes through paramiko (a dependency); a closed port is refused at once."""
    monkeypatch.setenv("DOCKER_HOST", "ssh://nobody@127.0.0.1:1")
    with pytest.raises(docker_api.DockerUnavailable) as caught:
        docker_api.client()
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("cannot reach the Docker engine at ssh://nobody@127.0.0.1:1 (DOCKER_HOST): ")
    assert "--context NAME" in text and "Install paramiko" not in text


# -- the engine a lab lives on --------------------------------------------------------------------

def test_mismatch_names_both_engines_and_the_fix():
    text = mismatch("ex1", VM, LOCAL)
    assert text is not None and "\n" not in text
    assert "lab 'ex1' lives on Docker engine default (tcp://127.0.0.1:2375, ID CCCC:DDDD)" in text
    assert f"this command reaches default ({DEFAULT_HOST}, ID AAAA:BBBB) (chosen by default socket)" in text
    assert "fix: DOCKER_HOST=tcp://127.0.0.1:2375 mptcpdock ..." in text
    assert "fix: mptcpdock --context colima ..." in (mismatch("ex1", CONTEXT, LOCAL) or "")


def test_the_same_engine_by_another_url_is_the_same_engine():
    through_tcp = EngineIdentity(id=LOCAL.id, name="default", host="tcp://127.0.0.1:40000", api_version="1.41")
    assert mismatch("ex1", through_tcp, LOCAL) is None
    assert mismatch("ex1", None, LOCAL) is None  # recorded before engines were
    no_id = EngineIdentity(id="", name="default", host=DEFAULT_HOST, api_version="1.41")
    assert mismatch("ex1", no_id, LOCAL) is None
    assert mismatch("ex1", EngineIdentity("", "default", "tcp://x:1", "1.41"), LOCAL) is not None


def lab_state(lab: str, engine: EngineIdentity | None) -> LabState:
    return LabState(lab=lab, topology_yaml="name: x\n", source=None, created=0.0, image={}, probe={},
                    impairments_dropped=False, dropped_links=[], networks={"l1": f"{lab}-l1"},
                    nodes={"h1": NodeState(container=f"{lab}-h1", container_id="c1", interfaces={})}, engine=engine)


def test_the_state_records_the_engine_and_reads_old_states():
    state = lab_state("t8-rec", VM)
    assert LabState.from_json(state.to_json()) == state
    old = json.loads(state.to_json())
    del old["engine"]
    assert LabState.from_json(json.dumps(old)).engine is None


def test_commands_refuse_a_lab_that_lives_on_another_engine(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(docker_api, "engine_identity", lambda: LOCAL)
    monkeypatch.setattr(apply, "running_labs", lambda: {})
    removed: list[str] = []
    monkeypatch.setattr(apply, "down", lambda lab, progress=None: removed.append(lab) or (0, 0))
    save_state(lab_state("t8-vm", VM))
    for attempt in (lambda: lab_api.current_state("t8-vm"), lambda: lab_api.tear_down("t8-vm")):
        with pytest.raises(EngineMismatch) as caught:
            attempt()
        assert "DOCKER_HOST=tcp://127.0.0.1:2375 mptcpdock" in str(caught.value)
    assert removed == [] and state_path("t8-vm").exists()
    rows = {row[0]: row for row in lab_api.status_rows()}
    assert rows["t8-vm"][4] == "-" and "on another engine: default (tcp://127.0.0.1:2375" in rows["t8-vm"][5]
    state_path("t8-vm").unlink()
    assert lab_api.tear_down("t8-vm")[0] == "t8-vm" and removed == ["t8-vm"]  # no state: labels decide


# -- the engine going away ------------------------------------------------------------------------

def refused() -> requests.exceptions.ConnectionError:
    try:
        requests.get("http://127.0.0.1:1/v1.41/info", timeout=5)
    except requests.exceptions.ConnectionError as exc:
        return exc
    raise AssertionError("port 1 answered")


def test_engine_gone_tells_a_lost_connection_from_a_refusal():
    lost = refused()
    assert docker_api.engine_gone(lost) and docker_api.failure_reason(lost) == "Connection refused"
    try:
        raise RuntimeFailure("creating the network failed") from lost
    except RuntimeFailure as wrapped:
        assert docker_api.engine_gone(wrapped)
    assert not docker_api.engine_gone(APIError("409 Conflict"))
    try:
        try:
            raise lost
        except requests.exceptions.ConnectionError:
            raise docker_api.DockerUnavailable("cannot reach") from None
    except docker_api.DockerUnavailable as unreachable:
        assert not docker_api.engine_gone(unreachable)  # never reached is not 'went away'


def test_up_losing_the_engine_is_one_line_with_what_may_be_left(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    lost = refused()

    def down(lab: str, progress=None):
        raise docker_api.gone_error(f"'down' of lab {lab!r}", lost, "nothing was removed", "again")

    monkeypatch.setattr(apply, "down", down)
    created = apply.Created(networks=["n1", "n2", "n3", "n4", "n5"], containers=["c1", "c2"])
    error = apply._rolled_back("t8-gone", lost, created, lambda _: None)
    assert isinstance(error, docker_api.EngineGone)
    assert str(error) == (
        "the Docker engine at tcp://127.0.0.1:1 (DOCKER_HOST) went away during 'up' of lab 't8-gone' "
        "(Connection refused); it may have left 2 containers and 5 networks created so far (and any whose "
        "creation was under way, and the kernel probe's container); run 'mptcpdock down t8-gone' once the engine "
        "answers again")


def test_down_losing_the_engine_says_how_much_was_removed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    lost = refused()
    monkeypatch.setattr(docker_api, "lab_containers", lambda lab=None: [{"Id": "c1"}, {"Id": "c2"}])
    monkeypatch.setattr(docker_api, "lab_networks", lambda lab=None: [{"Id": "n1"}])

    def remove_container(cid: str) -> None:
        if cid == "c2":
            raise lost

    monkeypatch.setattr(docker_api, "remove_container", remove_container)
    monkeypatch.setattr(docker_api, "remove_network", lambda nid: None)
    save_state(lab_state("t8-half", None))
    with pytest.raises(docker_api.EngineGone) as caught:
        apply.down("t8-half")
    assert str(caught.value) == (
        "the Docker engine at tcp://127.0.0.1:1 (DOCKER_HOST) went away during 'down' of lab 't8-half' "
        "(Connection refused); 1 of 2 containers and 0 of 1 networks were removed, the rest is still there; "
        "run 'mptcpdock down t8-half' again once the engine answers")
    assert state_path("t8-half").exists()  # kept until a down ends


def test_the_cli_turns_a_lost_engine_anywhere_into_one_line(monkeypatch: pytest.MonkeyPatch):
    from click.testing import CliRunner
    from mptcpdock.cli import main

    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    lost = refused()

    def status_rows():
        raise lost

    monkeypatch.setattr(lab_api, "status_rows", status_rows)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: the Docker engine at tcp://127.0.0.1:1 (DOCKER_HOST) went away during 'mptcpdock status' "
        "(Connection refused); what it had done so far stays as it was; run it again once the engine answers "
        "('mptcpdock status' lists the labs)"]


def test_the_context_option_beats_docker_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from click.testing import CliRunner
    from mptcpdock.cli import main

    write_contexts(tmp_path, None)
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    result = CliRunner().invoke(main, ["--context", "nope", "status"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: no Docker context 'nope' (from --context)")
    assert len(result.stderr.strip().splitlines()) == 1
