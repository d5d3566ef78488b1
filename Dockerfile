# The mptcpdock controller in a container, for machines where you would rather not install
# Python. It talks to the Docker engine through the mounted socket and creates each lab's
# networks and containers beside itself (the lab does not run inside this container).
#
# Build (from debian:bookworm-slim, which must be pullable or present; `mptcpdock image
# build --create-base always` makes it locally with debootstrap):
#
#   docker build -t mptcpdock/mptcpdock:0.2.1 .
#   # behind a TLS-intercepting proxy, let pip trust its CA:
#   docker build -t mptcpdock/mptcpdock:0.2.1 \
#       --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)" .
#
# Use: mount the Docker socket, a place for the lab state, and your working directory:
#
#   alias mptcpdock='docker run --rm -i -v /var/run/docker.sock:/var/run/docker.sock \
#       -v mptcpdock-state:/state -v "$PWD:/work" -w /work mptcpdock/mptcpdock:0.2.1'
#   mptcpdock up topologies/mptcp-default-configuration.yaml --allow-no-impairments
#   mptcpdock status
#   mptcpdock exec h1 ping -c3 192.168.11.2
#   mptcpdock down ex1
#
# * State: lab state (the resolved topology, kernel probe, trace) is written to /state
#   (MPTCPDOCK_STATE_DIR). Mount a named volume (as above) or a host directory there
#   (`-v "$HOME/.local/state/mptcpdock:/state"`, shared with a host install) so that
#   'status', 'exec' and 'down' in later runs find the labs that earlier runs brought up.
#   Without it, 'down LAB' still removes everything (Docker labels find the objects), but
#   'status' and 'exec' know nothing of the lab.
# * Files: paths are inside the container. Topology files and results must be under the
#   mounted working directory; the bundled topologies need no file: 'mptcpdock up ex1'
#   ('mptcpdock examples' lists them).
# * 'exec NODE' without a command (an interactive shell) needs the docker CLI, which this
#   image does not have: run `docker exec -it LAB-NODE bash` on the host instead.
# * 'image build' works from here too (the node image's build context ships inside the
#   installed package) when debian:bookworm-slim is present or pullable.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG PYTHON3_VERSION=3.11.2-1+b1
# Graphviz's dot draws 'mptcpdock graph' PNG/SVG and each run's plots/topology.png.
ARG GRAPHVIZ_VERSION=2.42.2-7+deb12u1
# Behind a TLS-intercepting proxy, pass its CA certificate(s) so that pip can reach PyPI:
#   --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)"
ARG EXTRA_CA_CERTS=""
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3="${PYTHON3_VERSION}" python3-venv ca-certificates graphviz="${GRAPHVIZ_VERSION}" \
 && rm -rf /var/lib/apt/lists/* \
 && if [ -n "${EXTRA_CA_CERTS}" ]; then \
      printf '%s\n' "${EXTRA_CA_CERTS}" > /usr/local/share/ca-certificates/mptcpdock-build-extra.crt \
      && update-ca-certificates; \
    fi
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /opt/mptcpdock
# Dependencies first (a layer that survives source edits), then the package itself.
COPY pyproject.toml ./
RUN python3 -m venv /opt/mptcpdock/venv \
 && /opt/mptcpdock/venv/bin/pip install \
      $(python3 -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
COPY README.md setup.py MANIFEST.in ./
COPY mptcpdock ./mptcpdock
COPY images ./images
COPY topologies ./topologies
# A regular install, as from a wheel: the build copies images/ and topologies/ into the package.
RUN /opt/mptcpdock/venv/bin/pip install --no-deps . \
 && /opt/mptcpdock/venv/bin/mptcpdock --version \
 && /opt/mptcpdock/venv/bin/mptcpdock image build --dry-run

ARG MPTCPDOCK_VERSION=0.2.1
LABEL org.opencontainers.image.title="mptcpdock controller" \
      org.opencontainers.image.version="${MPTCPDOCK_VERSION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.source="Dockerfile"
ENV PATH=/opt/mptcpdock/venv/bin:$PATH \
    MPTCPDOCK_STATE_DIR=/state \
    PYTHONUNBUFFERED=1
VOLUME ["/state"]
WORKDIR /work
ENTRYPOINT ["mptcpdock"]
CMD ["--help"]
