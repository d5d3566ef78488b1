#!/usr/bin/env bash
# A Linux VM as a Docker host for mptcpdock: Debian trixie (cloud kernel 6.12: MPTCP built in,
# sch_netem and friends as modules) running dockerd, booted with QEMU and reachable only through
# one TCP forward on 127.0.0.1. For testing on a kernel with netem, and the remote-engine path.
#
#   scripts/vm-host.sh start [--with-image]  build the base image once (cached), boot a throwaway
#                                            overlay of it, wait for the engine (and copy the node
#                                            image into it); the LAST line on stdout is
#                                            DOCKER_HOST=tcp://127.0.0.1:PORT, all else is on stderr
#   scripts/vm-host.sh status                state, pid, port, accel; exit 0 if the engine answers, 3 if not
#   scripts/vm-host.sh stop                  power the guest off; kill only the QEMU this script started
#   scripts/vm-host.sh load-image [TAG]      copy TAG (default: the node image) from the local engine
#                                            into the VM's, with `mptcpdock image save`/`load`; skipped
#                                            when the VM already has the same image id
#   scripts/vm-host.sh build                 only build the cached base image (needs root)
#
#   export "$(scripts/vm-host.sh start --with-image | tail -1)"    # then mptcpdock, docker, pytest
#
# Environment:
#   MPTCPDOCK_VM_CACHE    cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/mptcpdock/vm-host), outside
#                         the repository so that every clone on the machine reuses one base image
#   MPTCPDOCK_VM_PORT     port on 127.0.0.1 for the engine (default: a free one, chosen at start)
#   MPTCPDOCK_VM_ACCEL    kvm or tcg: skip the KVM probe (by default a short probe boot decides,
#                         once per host kernel and QEMU version; a /dev/kvm that opens but hangs
#                         guests falls back to tcg)
#   MPTCPDOCK_VM_MEM      guest memory (default 4G); MPTCPDOCK_VM_CPUS: vCPUs (default 2, 1 on a 1-core host)
#   MPTCPDOCK_VM_TIMEOUT  seconds to wait for the engine after boot (default 300)
#   MPTCPDOCK_VM_MIRROR   Debian mirror for debootstrap (default: the one in the host's apt sources)
#
# Network: QEMU user networking with restrict=on (the guest reaches nothing outside, not even the
# host), no IPv6, and a single hostfwd from 127.0.0.1:PORT to the guest's dockerd (tcp 2375, no
# TLS: only this machine's loopback reaches it). The guest has no default route. The node image
# reaches the VM over the Docker API, never through a registry.
#
# Cache: base-HASH/ (the ext4 root image, sparse, read-only; the kernel and initrd from its /boot;
# recipe and build times), named by a hash of the recipe below so that changing it rebuilds; it is
# built in .build-* and renamed when complete, so an interrupted build never looks complete.
# run/ (the qcow2 overlay of this boot, pid file, port, console log). accel-probe (the verdicts).
set -euo pipefail
trap 'exit 130' INT
trap 'exit 143' TERM HUP     # so that the EXIT trap (an unfinished build's cleanup) runs

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MPTCPDOCK_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mptcpdock/vm-host}"
RUN="$CACHE/run"
MARKER=mptcpdock-vm-host          # QEMU's -name: stop and status only touch a QEMU carrying it
GUEST_INIT=/usr/local/sbin/mptcpdock-init
GUEST_DOCKER_PORT=2375
MEM="${MPTCPDOCK_VM_MEM:-4G}"
CPUS="${MPTCPDOCK_VM_CPUS:-$(( $(nproc) >= 2 ? 2 : 1 ))}"
TIMEOUT="${MPTCPDOCK_VM_TIMEOUT:-300}"

# The recipe: any change here (or in the guest files below) changes the hash, so `start` rebuilds.
RECIPE_VERSION=3
SUITE=trixie
INCLUDE=linux-image-cloud-amd64,docker.io,iproute2,kmod,procps,iptables,ca-certificates,initramfs-tools,udev,iputils-ping
IMAGE_SIZE=6G
INITRD_MODULES=virtio_blk   # all the initrd needs: the cloud kernel has virtio_pci and ext4 built in

say() { printf '[vm-host] %s\n' "$*" >&2; }
die() { printf '[vm-host] ERROR: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 not found (fix: $2)"; }

# Run docker against the VM engine, ignoring any TLS or context settings meant for another engine.
vm_docker() {
    env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT DOCKER_HOST="tcp://127.0.0.1:$1" \
        timeout "${VM_DOCKER_TIMEOUT:-60}" docker "${@:2}"
}

# ---------------------------------------------------------------------------------------------
# The guest: files written into the root filesystem at build time.

guest_init() {
    cat <<'EOF'
#!/bin/bash
# PID 1 of the mptcpdock VM host (written by scripts/vm-host.sh when it built this image).
# Mounts, modules, the NIC, dockerd; then waits for the ACPI power button (QEMU's
# system_powerdown, sent by `vm-host.sh stop`) and powers off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
say() { echo "[vm-init] $*"; }

mountpoint -q /proc || mount -t proc -o nosuid,nodev,noexec proc /proc
mountpoint -q /sys || mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mountpoint -q /dev || mount -t devtmpfs -o mode=755,nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mountpoint -q /run || mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mountpoint -q /tmp || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -o remount,rw /
hostname mptcpdock-vm

modprobe virtio_net || say "modprobe virtio_net failed"
# The NIC's name depends on who named it (eth0, ens3, enp0s3...): take the first real device.
nic=
for dev in /sys/class/net/*; do
    [ "${dev##*/}" != lo ] && [ -e "$dev/device" ] && { nic=${dev##*/}; break; }
done
ip link set lo up
if [ -n "$nic" ]; then
    # QEMU user networking: no default route on purpose (nor IPv6 router advertisements), the
    # guest talks only to the forward.
    echo 0 > "/proc/sys/net/ipv6/conf/$nic/accept_ra" 2>/dev/null
    ip addr add 10.0.2.15/24 dev "$nic" && ip link set "$nic" up && say "network: $nic 10.0.2.15/24"
else
    say "no network device found: $(ls /sys/class/net)"
fi

# One modprobe for many modules: under software emulation every process start costs.
load_modules() {
    modprobe -a "$@" 2>/dev/null && return
    for mod; do modprobe "$mod" 2>/dev/null || say "modprobe $mod failed"; done
}
# What dockerd needs, before it starts; the rest while it starts.
load_modules bridge br_netfilter veth overlay nf_tables nft_compat nft_chain_nat nf_nat \
    nf_conntrack xt_conntrack xt_MASQUERADE xt_addrtype ip_tables iptable_nat iptable_filter \
    ip6_tables ip6table_nat ip6table_filter
# Frames crossing a lab's bridges skip iptables: a lab link is a point-to-point bridge with no
# host address, nothing on it needs filtering, and under software emulation every netfilter
# hook (and conntrack) on every frame at every bridge costs emulated CPU. Docker's isolation
# between networks is routed (layer 3), which this does not touch.
sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
    net.bridge.bridge-nf-call-arptables=0 || say "could not turn bridge netfilter off"
# Hold the kernel's timestamp static key on for good. Under multi-threaded TCG a guest with
# 2 vCPUs dies ("Oops: int3", then a panic) when the kernel patches a static key while the
# other vCPU runs the patched code; ping turns the timestamp key on at start and off at exit
# (a loop of `ping -c1` beside an iperf3 flow panicked 2 vCPUs within a minute, every time).
# With one holder alive the key never changes: the same loop ran 300 pings without a fault.
ping -q -i 3600 127.0.0.1 > /dev/null 2>&1 &

mkdir -p /var/log
# The host reaches this only through QEMU's forward on its 127.0.0.1; --tls=false says so
# explicitly (dockerd otherwise waits 15 s before listening on TCP without TLS).
dockerd -H tcp://0.0.0.0:2375 -H unix:///run/docker.sock --tls=false \
    > >(tee /var/log/dockerd.log) 2>&1 < /dev/null &
dockerd_pid=$!
say "dockerd started (pid $dockerd_pid, log: the console and /var/log/dockerd.log)"

load_modules sch_netem sch_htb sch_tbf sch_ingress sch_prio sch_sfq sch_fq sch_fq_codel \
    sch_cake cls_u32 cls_fw cls_matchall act_mirred ifb tcp_bbr button evdev virtio_rng
say "kernel $(uname -r), mptcp enabled=$(cat /proc/sys/net/mptcp/enabled 2>/dev/null || echo absent)," \
    "netem $(lsmod | grep -qw sch_netem && echo loaded || echo absent)"

power=
for ev in /sys/class/input/event*; do
    [ "$(cat "$ev/device/name" 2>/dev/null)" = "Power Button" ] && power=/dev/input/${ev##*/}
done
# One input event (24 bytes: evdev refuses shorter reads) means the button was pressed.
if [ -n "$power" ] && dd if="$power" of=/dev/null bs=24 count=1 status=none; then
    say "power button: stopping dockerd"
    kill -TERM "$dockerd_pid"
    for _ in $(seq 40); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    sync
    echo u > /proc/sysrq-trigger          # remount read-only
    say "powering off"
    echo o > /proc/sysrq-trigger
    sleep 30
fi
say "no usable power button: \`vm-host.sh stop\` will kill QEMU"
while :; do sleep 3600; done
EOF
}

guest_daemon_json() {
    # The VM engine serves one lab runner: no userland proxy (nothing is published anyway).
    printf '{\n  "userland-proxy": false\n}\n'
}

recipe_text() {
    printf 'recipe %s\nsuite %s\nvariant minbase\ninclude %s\nimage %s ext4\ninitrd MODULES=list %s\n' \
        "$RECIPE_VERSION" "$SUITE" "$INCLUDE" "$IMAGE_SIZE" "$INITRD_MODULES"
    guest_init
    guest_daemon_json
}

RECIPE_HASH="$(recipe_text | sha256sum | cut -c1-12)"
BASE="$CACHE/base-$RECIPE_HASH"

# ---------------------------------------------------------------------------------------------
# Building the base image (once).

base_complete() { [ -f "$BASE/complete" ] && [ -f "$BASE/rootfs.img" ] && [ -f "$BASE/vmlinuz" ] && [ -f "$BASE/initrd.img" ]; }

# The Debian mirror the host's apt uses (deb822 or one-line sources), main archive only.
host_mirror() {
    local uri
    uri="$(
        { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
          grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
              sed -E 's/\[[^]]*\]//' | awk '{print $2}'
        } | grep -E '^https?://' | grep -v -- '-security' | grep -E '/debian/?$' | head -1
    )" || true
    printf '%s' "${MPTCPDOCK_VM_MIRROR:-$uri}"
}

# Unmount whatever debootstrap may have left mounted inside DIR, then delete DIR without ever
# crossing into another file system.
remove_tree() {
    local dir="$1" mnt
    [ -e "$dir" ] || return 0
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(findmnt -rn -o TARGET | grep -F "$dir/" | sort -r)
    rm -rf --one-file-system "$dir" || say "could not remove all of $dir"
}

BUILD_TMP=
BUILD_PID=
cleanup_build() {
    if [ -n "$BUILD_PID" ]; then     # an interrupted debootstrap: timeout leads its process group
        kill -TERM -- "-$BUILD_PID" 2>/dev/null || true
        wait "$BUILD_PID" 2>/dev/null || true
    fi
    [ -z "$BUILD_TMP" ] || { say "removing the unfinished build $BUILD_TMP"; remove_tree "$BUILD_TMP"; }
}

build_base() {
    if base_complete; then
        say "base image: $BASE (cached)"
        return
    fi
    [ "$(id -u)" -eq 0 ] ||
        die "building the base image needs root (debootstrap, mkfs.ext4 -d): run 'sudo MPTCPDOCK_VM_CACHE=$CACHE $0 build' once"
    need debootstrap "apt-get install debootstrap (or scripts/bootstrap.sh --vm)"
    need mkfs.ext4 "apt-get install e2fsprogs"
    local stale
    for stale in "$CACHE"/.build-*; do
        [ -e "$stale" ] && { say "removing an interrupted build: $stale"; remove_tree "$stale"; }
    done
    BUILD_TMP="$(mktemp -d "$CACHE/.build-$RECIPE_HASH.XXXXXX")"
    trap cleanup_build EXIT
    local root="$BUILD_TMP/rootfs" mirror t0 t1 t2 t3
    mirror="$(host_mirror)"
    say "building the base image (Debian $SUITE, once): debootstrap ${mirror:-(default mirror)}, log $BUILD_TMP/debootstrap.log"
    t0=$SECONDS
    # In the background so that a signal reaches our trap (and the trap ends debootstrap) at once.
    timeout 1800 debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" ${mirror:+"$mirror"} \
        > "$BUILD_TMP/debootstrap.log" 2>&1 &
    BUILD_PID=$!
    if ! wait "$BUILD_PID"; then
        BUILD_PID=
        tail -n 20 "$BUILD_TMP/debootstrap.log" >&2
        die "debootstrap failed (log above)"
    fi
    BUILD_PID=
    t1=$SECONDS
    say "debootstrap: $((t1 - t0)) s"

    guest_init > "$root$GUEST_INIT"
    chmod 755 "$root$GUEST_INIT"
    mkdir -p "$root/etc/docker"
    guest_daemon_json > "$root/etc/docker/daemon.json"
    echo mptcpdock-vm > "$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 mptcpdock-vm\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
    : > "$root/etc/resolv.conf"
    # The guest has no network to install from: drop the package caches and lists, and the docs.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*

    local kernel kver
    kernel="$(ls "$root"/boot/vmlinuz-* 2>/dev/null | head -1)"
    [ -n "$kernel" ] || die "no kernel in $root/boot"
    kver="${kernel##*/vmlinuz-}"
    # A small initrd (the default one carries most modules: 18 MB, slower to boot under TCG).
    echo MODULES=list > "$root/etc/initramfs-tools/conf.d/mptcpdock"
    printf '%s\n' $INITRD_MODULES >> "$root/etc/initramfs-tools/modules"
    rm -f "$root/boot/initrd.img-$kver"
    chroot "$root" mkinitramfs -o "/boot/initrd.img-$kver" "$kver" 2>&1 | grep -v 'No zstd' >&2 || true
    [ -s "$root/boot/initrd.img-$kver" ] || die "mkinitramfs made no initrd"
    cp "$kernel" "$BUILD_TMP/vmlinuz"
    cp "$root/boot/initrd.img-$kver" "$BUILD_TMP/initrd.img"
    echo "$kver" > "$BUILD_TMP/kernel-version"

    t2=$SECONDS
    truncate -s "$IMAGE_SIZE" "$BUILD_TMP/rootfs.img"
    mkfs.ext4 -q -F -L mptcpdock-root -d "$root" "$BUILD_TMP/rootfs.img" >&2
    t3=$SECONDS
    say "mkfs.ext4 -d: $((t3 - t2)) s"
    remove_tree "$root"
    chmod a-w "$BUILD_TMP/rootfs.img"    # only ever a backing file
    recipe_text > "$BUILD_TMP/recipe"
    printf 'debootstrap_s %s\nmkfs_s %s\nbuilt %s\n' "$((t1 - t0))" "$((t3 - t2))" "$(date -u +%FT%TZ)" \
        > "$BUILD_TMP/build-times"
    touch "$BUILD_TMP/complete"
    chmod 755 "$BUILD_TMP"
    # Built with sudo for a user: the cache is theirs to boot from.
    [ -z "${SUDO_UID:-}" ] || chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$CACHE"
    mv "$BUILD_TMP" "$BASE"              # atomic: the cache holds a complete image or none
    BUILD_TMP=
    trap - EXIT
    local old
    for old in "$CACHE"/base-*; do
        [ "$old" = "$BASE" ] || { say "removing an older base image: $old"; remove_tree "$old"; }
    done
    say "base image: $BASE ($(du -sh "$BASE" | cut -f1) on disk, kernel $(cat "$BASE/kernel-version"))"
}

# ---------------------------------------------------------------------------------------------
# Acceleration: KVM only when a probe boot proves it runs a guest.

probe_key() { printf 'host-kernel=%s %s' "$(uname -r)" "$(qemu-system-x86_64 --version | head -1 | tr ' ' '_')"; }

check_accel_env() {
    case "${MPTCPDOCK_VM_ACCEL:-}" in
        kvm|tcg|'') ;;
        *) die "MPTCPDOCK_VM_ACCEL must be kvm or tcg, not '$MPTCPDOCK_VM_ACCEL'" ;;
    esac
}

choose_accel() {
    if [ -n "${MPTCPDOCK_VM_ACCEL:-}" ]; then
        say "accel: $MPTCPDOCK_VM_ACCEL (MPTCPDOCK_VM_ACCEL)"
        echo "$MPTCPDOCK_VM_ACCEL"
        return
    fi
    if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        say "accel: tcg (/dev/kvm is not usable by $(id -un))"
        echo tcg
        return
    fi
    local key verdict
    key="$(probe_key)"
    verdict="$(awk -v k="$key" '$1" "$2 == k {print $3}' "$CACHE/accel-probe" 2>/dev/null | tail -1)"
    if [ -n "$verdict" ]; then
        say "accel: $verdict (cached probe verdict for $(uname -r))"
        echo "$verdict"
        return
    fi
    # Boot the guest kernel with no root file system: it prints its banner and panics at once,
    # and -no-reboot ends QEMU. A KVM that really runs guests does this in a few seconds.
    local log="$CACHE/accel-probe.log" t0=$SECONDS status=0 why
    say "accel: probing KVM with a short boot (at most 20 s)"
    timeout -k 2 20 qemu-system-x86_64 -name "$MARKER-probe" -nodefaults -no-user-config \
        -accel kvm -cpu host -m 256M -smp 1 -display none -no-reboot \
        -serial "file:$log" -kernel "$BASE/vmlinuz" -append "console=ttyS0 panic=-1 root=/dev/null" \
        > "$CACHE/accel-probe.err" 2>&1 9>&- || status=$?
    if [ "$status" -eq 0 ] && grep -q 'Linux version' "$log"; then
        verdict=kvm why="the guest kernel booted"
    elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        verdict=tcg why="no guest output within 20 s"
    else
        verdict=tcg why="QEMU: $(grep -m1 . "$CACHE/accel-probe.err" || echo "exit status $status")"
    fi
    say "accel: $verdict (KVM probe, $((SECONDS - t0)) s: $why)"
    printf '%s %s\n' "$key" "$verdict" >> "$CACHE/accel-probe"
    echo "$verdict"
}

# ---------------------------------------------------------------------------------------------
# The running VM.

qemu_pid() {
    # The pid in the pid file, if that process is a QEMU that this cache's run started.
    local pid cmd
    pid="$(cat "$RUN/qemu.pid" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    cmd="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmd" == *qemu-system-* ]] && [[ "$cmd" == *"-name $MARKER "* ]] && [[ "$cmd" == *"$RUN/overlay.qcow2"* ]] || return 1
    echo "$pid"
}

engine_answers() { VM_DOCKER_TIMEOUT=10 vm_docker "$1" info > /dev/null 2>&1; }

run_port() { cat "$RUN/port" 2>/dev/null; }

port_free() {
    python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
EOF
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

console_tail() { say "console log ($RUN/console.log), last lines:"; tail -n "${1:-25}" "$RUN/console.log" >&2 2>/dev/null || true; }

clear_run() { rm -f "$RUN/qemu.pid" "$RUN/overlay.qcow2" "$RUN/monitor.sock" "$RUN/port" "$RUN/accel"; }

boot() {
    local accel="$1" port="$2" accel_args
    case "$accel" in
        kvm) accel_args=(-accel kvm -cpu host) ;;
        tcg) accel_args=(-accel tcg,thread=multi -cpu max) ;;
    esac
    qemu-img create -q -f qcow2 -b "$BASE/rootfs.img" -F raw "$RUN/overlay.qcow2"
    : > "$RUN/console.log"
    # -nodefaults: no NIC, serial or monitor other than these; the only NIC is restricted user
    # networking whose only opening is the forward from the host's 127.0.0.1.
    qemu-system-x86_64 -name "$MARKER" -nodefaults -no-user-config "${accel_args[@]}" \
        -m "$MEM" -smp "$CPUS" \
        -kernel "$BASE/vmlinuz" -initrd "$BASE/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 init=$GUEST_INIT panic=-1 loglevel=4" \
        -drive "file=$RUN/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe,discard=unmap" \
        -netdev "user,id=n0,restrict=on,ipv6=off,hostfwd=tcp:127.0.0.1:$port-:$GUEST_DOCKER_PORT" \
        -device virtio-net-pci,netdev=n0 \
        -device virtio-rng-pci \
        -serial "file:$RUN/console.log" \
        -monitor "unix:$RUN/monitor.sock,server,nowait" \
        -display none -no-reboot \
        -daemonize -pidfile "$RUN/qemu.pid" > "$RUN/qemu.err" 2>&1 9>&-   # not the lock: QEMU outlives us
}

print_host_line() { echo "DOCKER_HOST=tcp://127.0.0.1:$1"; }

lock() {
    mkdir -p "$CACHE" "$RUN"
    exec 9> "$CACHE/lock"
    flock -n 9 && return
    say "waiting for another vm-host.sh (it holds $CACHE/lock)"
    flock -w 3600 9 || die "another vm-host.sh still holds $CACHE/lock after an hour"
}

cmd_start() {
    local with_image=0 arg
    for arg in "$@"; do
        case "$arg" in
            --with-image) with_image=1 ;;
            *) die "start: unknown option $arg (usage: start [--with-image])" ;;
        esac
    done
    need qemu-system-x86_64 "apt-get install qemu-system-x86 (or scripts/bootstrap.sh --vm)"
    need qemu-img "apt-get install qemu-utils (or scripts/bootstrap.sh --vm)"
    need docker "apt-get install docker.io"
    need python3 "apt-get install python3"
    check_accel_env
    lock
    local pid port
    if pid="$(qemu_pid)"; then
        port="$(run_port)"
        if engine_answers "$port"; then
            say "already running (pid $pid, accel $(cat "$RUN/accel" 2>/dev/null))"
            [ "$with_image" -eq 0 ] || load_image "$port" ""
            print_host_line "$port"
            return
        fi
        say "QEMU $pid runs but its engine does not answer: restarting it"
        stop_qemu "$pid"
    elif [ -e "$RUN/qemu.pid" ]; then
        say "removing the state of a VM that is gone"
    fi
    clear_run

    build_base
    local accel t0 tries=0
    accel="$(choose_accel)"
    while :; do
        if [ -n "${MPTCPDOCK_VM_PORT:-}" ]; then
            port="$MPTCPDOCK_VM_PORT"
            port_free "$port" || die "port $port on 127.0.0.1 is in use (MPTCPDOCK_VM_PORT)"
        else
            port="$(free_port)"
        fi
        say "booting ($accel, $MEM, $CPUS vCPUs, engine at 127.0.0.1:$port; console: $RUN/console.log)"
        t0=$SECONDS
        boot "$accel" "$port" && break
        tries=$((tries + 1))
        if [ -n "${MPTCPDOCK_VM_PORT:-}" ] || [ "$tries" -ge 3 ] || ! grep -qi 'forward' "$RUN/qemu.err"; then
            cat "$RUN/qemu.err" >&2
            clear_run
            die "QEMU did not start (its error above)"
        fi
        say "port $port was taken meanwhile: another one"
    done
    echo "$port" > "$RUN/port"
    echo "$accel" > "$RUN/accel"
    pid="$(qemu_pid)" || { console_tail; clear_run; die "QEMU exited right after starting"; }

    until engine_answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            console_tail 40
            clear_run
            die "the VM stopped before its engine answered"
        fi
        if [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
            console_tail 40
            stop_qemu "$pid"
            clear_run
            die "the VM's engine did not answer within $TIMEOUT s (MPTCPDOCK_VM_TIMEOUT); the VM was stopped"
        fi
        sleep 1
    done
    say "engine answering $((SECONDS - t0)) s after boot: $(vm_docker "$port" version -f 'Docker {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null), kernel $(vm_docker "$port" info -f '{{.KernelVersion}}' 2>/dev/null)"
    [ "$with_image" -eq 0 ] || load_image "$port" ""
    print_host_line "$port"
}

# Power the guest off through QEMU's monitor; kill the QEMU if it is still there after a while.
stop_qemu() {
    local pid="$1" waited=0
    if [ -S "$RUN/monitor.sock" ] && python3 - "$RUN/monitor.sock" <<'EOF' 2>/dev/null
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"system_powerdown\n")
time.sleep(0.3)
EOF
    then
        say "asked the guest to power off (pid $pid)"
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 60 ]; do sleep 0.5; waited=$((waited + 1)); done
    fi
    if kill -0 "$pid" 2>/dev/null; then
        say "the guest did not power off: killing QEMU $pid"
        kill -TERM "$pid" 2>/dev/null || true
        waited=0
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 20 ]; do sleep 0.5; waited=$((waited + 1)); done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    else
        say "the guest powered off"
    fi
}

cmd_stop() {
    lock
    local pid
    if pid="$(qemu_pid)"; then
        stop_qemu "$pid"
        kill -0 "$pid" 2>/dev/null && die "QEMU $pid is still running"
        say "stopped"
    elif [ -e "$RUN/qemu.pid" ]; then
        say "not running (pid file $(cat "$RUN/qemu.pid" 2>/dev/null) is not a QEMU of ours; left it alone)"
    else
        say "not running"
    fi
    clear_run
}

cmd_status() {
    local pid port
    if ! pid="$(qemu_pid)"; then
        echo "[vm-host] not running (cache: $CACHE)"
        return 3
    fi
    port="$(run_port)"
    echo "[vm-host] pid $pid, accel $(cat "$RUN/accel" 2>/dev/null), port $port, console $RUN/console.log"
    if engine_answers "$port"; then
        echo "[vm-host] running: engine answering"
        print_host_line "$port"
        return 0
    fi
    echo "[vm-host] QEMU running, engine not answering (booting, or broken: see the console log)"
    return 3
}

# ---------------------------------------------------------------------------------------------
# The node image, over the API.

NODE_IMAGE_PY='from mptcpdock import NODE_IMAGE; print(NODE_IMAGE)'

mptcpdock_cli() {
    if [ -x "$REPO/.venv/bin/mptcpdock" ]; then echo "$REPO/.venv/bin/mptcpdock"; else command -v mptcpdock; fi
}

# Copy TAG from the local engine (DOCKER_HOST as set, unless that is the VM) into the VM's.
load_image() {
    local port="$1" tag="$2" cli vm_host src_env=() src_id vm_id t0 t1 tarball
    vm_host="tcp://127.0.0.1:$port"
    cli="$(mptcpdock_cli)" || die "mptcpdock not found (fix: scripts/bootstrap.sh, which makes $REPO/.venv)"
    if [ -z "$tag" ]; then
        tag="$("$(dirname "$cli")/python" -c "$NODE_IMAGE_PY" 2>/dev/null ||
               PYTHONPATH="$REPO" python3 -c "$NODE_IMAGE_PY" 2>/dev/null)" ||
            die "cannot tell the node image's tag: pass it (load-image TAG)"
    fi
    [ "${DOCKER_HOST:-}" != "$vm_host" ] || src_env=(-u DOCKER_HOST)
    src_id="$(env "${src_env[@]}" docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null)" ||
        die "$tag is not on the local engine (fix: scripts/bootstrap.sh, or mptcpdock image build)"
    vm_id="$(vm_docker "$port" image inspect -f '{{.Id}}' "$tag" 2>/dev/null)" || vm_id=
    if [ "$vm_id" = "$src_id" ]; then
        say "$tag is already in the VM engine (${src_id:7:12})"
        return
    fi
    tarball="$RUN/image.tar"
    t0=$SECONDS
    env "${src_env[@]}" "$cli" image save --tag "$tag" "$tarball" >&2
    t1=$SECONDS
    env -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT DOCKER_HOST="$vm_host" \
        "$cli" image load "$tarball" >&2 || { rm -f "$tarball"; die "loading $tag into the VM engine failed"; }
    rm -f "$tarball"
    vm_id="$(vm_docker "$port" image inspect -f '{{.Id}}' "$tag" 2>/dev/null)" || vm_id=
    [ "$vm_id" = "$src_id" ] || die "the VM engine has $tag as ${vm_id:-nothing}, not ${src_id}"
    say "$tag copied into the VM engine: save $((t1 - t0)) s, load $((SECONDS - t1)) s"
}

cmd_load_image() {
    [ "$#" -le 1 ] || die "usage: load-image [TAG]"
    local pid port
    pid="$(qemu_pid)" || die "the VM is not running (fix: $0 start)"
    port="$(run_port)"
    engine_answers "$port" || die "the VM's engine does not answer (see $RUN/console.log)"
    load_image "$port" "${1:-}"
}

cmd_build() {
    lock
    build_base
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

case "${1:-}" in
    start) shift; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    load-image) shift; cmd_load_image "$@" ;;
    build) cmd_build ;;
    -h|--help|help) usage ;;
    *) usage; exit 2 ;;
esac
