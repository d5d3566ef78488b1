#!/usr/bin/env bash
# The main job on a bundled topology, from a fresh Linux machine: set everything up
# (scripts/bootstrap.sh), then run NeST's example 1 as an MPTCP experiment on Docker
# and leave its results in results/. Extra arguments go to `mptcpdock run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
# --allow-no-impairments only matters on kernels without netem (delay/loss are then
# dropped, recorded in the results and warned about); elsewhere the delays apply.
.venv/bin/mptcpdock run topologies/mptcp-default-configuration.yaml --allow-no-impairments --duration 20 "$@"
.venv/bin/mptcpdock down ex1
