"""The fixed shell scripts ``mptcpdock run`` executes inside nodes.

They are constant text: every value (paths, ports, the iperf3 command line) arrives as a
positional argument, never as shell code. Every process they start in the background
writes its pid to ``RUN_DIR/NAME.pid`` so that :data:`FINISH` (and Ctrl-C) can stop it.
Files in ``RUN_DIR`` (``/tmp/mptcpdock-run/<results name>`` in the node) are copied out
at the end.
"""

from __future__ import annotations

#: args: RUN_DIR MONITOR(0|1) PERIOD_US EVENTS_SCRIPT SAMPLER_SCRIPT. Records the node's
#: settings, starts ``ip -ts mptcp monitor`` (every line timestamped) when asked, ONE sampler
#: loop (:data:`SAMPLER`, under bash: ``ss -tinMOH`` + ``/proc/net/dev`` every PERIOD_US
#: microseconds) and, when RUN_DIR/schedule.txt exists, the node's event agent (:data:`EVENTS`,
#: under bash; it waits for RUN_DIR/t0); then returns, printing the node's clock (epoch
#: microseconds: the Docker host's).
AGENT = r"""set -u
dir=$1; monitor=$2; period=$3; events=$4; sampler=$5
mkdir -p "$dir"
{
  echo "date=$(date +%s.%N) tz=$(date +%z) kernel=$(uname -r)"
  ip -V; iperf3 --version 2>&1 | head -n 1
  echo "## sysctls"
  for key in net.mptcp.enabled net.mptcp.scheduler net.mptcp.path_manager net.mptcp.checksum_enabled \
      net.ipv4.tcp_congestion_control net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.core.rmem_max \
      net.core.wmem_max net.ipv4.tcp_no_metrics_save net.ipv4.ip_forward net.ipv4.conf.all.rp_filter net.mptcp.blackhole_timeout; do
    printf "%s = %s\n" "$key" "$(sysctl -n "$key" 2>/dev/null | tr "\t" " ")"
  done
  echo "## ip mptcp limits"; ip mptcp limits show
  echo "## ip mptcp endpoint"; ip mptcp endpoint show
  echo "## ip -4 addr"; ip -4 -o addr show
  echo "## ip route"; ip route show
  echo "## ip rule"; ip rule show
  echo "## tc -s qdisc"; tc -s qdisc show
  echo "## nstat"; nstat -asz
} > "$dir/info-start.txt" 2>&1
if [ "$monitor" = 1 ]; then
  ip -ts mptcp monitor > "$dir/monitor.log" 2>&1 &
  echo $! > "$dir/monitor.pid"
fi
bash -c "$sampler" mptcpdock-sampler "$dir" "$period" > "$dir/samples.txt" 2>&1 &
echo $! > "$dir/sampler.pid"
if [ -s "$dir/schedule.txt" ]; then
  bash -c "$events" mptcpdock-events "$dir" > "$dir/events.err" 2>&1 &
  echo $! > "$dir/events.pid"
fi
sleep 0.1
echo "started $(date +%s%6N)"
"""

#: Bash lines shared by the bash agents: ``open_tick PATH`` opens fd 9 on a FIFO nobody writes
#: (then removes its name), so that ``read -t`` on it is a wait without a process;
#: ``sleep_until US`` waits that way until US, epoch microseconds.
_BASH_CLOCK = r"""open_tick() { mkfifo "$1" && exec 9<>"$1"; rm -f "$1"; }
sleep_until() {
  local left secs
  while :; do
    left=$(( $1 - ${EPOCHREALTIME/./} ))
    [ "$left" -le 0 ] && return 0
    printf -v secs '%d.%06d' $((left / 1000000)) $((left % 1000000))
    read -r -t "$secs" -u 9 _ || :
  done
}
"""

#: args: RUN_DIR (bash). The node's event agent: waits for RUN_DIR/t0 (epoch microseconds of
#: the Docker host's clock; the run writes it once every agent has started, so a slow start
#: never makes the first steps late; it gives up after 300 s), reads RUN_DIR/schedule.txt (one
#: step a line, tab-separated: OFFSET_US or 'setup', ID, TOOL, ARGS...; TOOL is ip, tc or snap),
#: runs the setup steps at once, then waits for t0 + OFFSET of each step (``read -t`` on a FIFO: no
#: process per wait) and applies it: ``ip``/``tc`` with the arguments as they are (never
#: through a shell), ``snap`` an ``nstat -asz`` snapshot into RUN_DIR/nstat-ARG.txt. Every
#: step is logged to RUN_DIR/events.log: ID, PLANNED_US, START_US, END_US, EXIT STATUS,
#: COMMAND, OUTPUT (errors are logged, never swallowed).
EVENTS = r"""set -u
""" + _BASH_CLOCK + r"""dir=$1
log="$dir/events.log"
: > "$log"
open_tick "$dir/.tick"
give_up=$(( ${EPOCHREALTIME/./} + 300000000 ))
while [ ! -s "$dir/t0" ]; do
  if [ "${EPOCHREALTIME/./}" -gt "$give_up" ]; then
    printf 'agent\tt0\t%s\t%s\t1\twait for t0\tno t0 after 300 s: no step was applied\n' "${EPOCHREALTIME/./}" "${EPOCHREALTIME/./}" >> "$log"
    exit 1
  fi
  read -r -t 0.005 -u 9 _ || :
done
read -r t0 < "$dir/t0"
apply() {
  local planned=$1 id=$2 tool=$3; shift 3
  local start=${EPOCHREALTIME/./} out rc
  case "$tool" in
    ip|tc) out=$("$tool" "$@" 2>&1 </dev/null); rc=$? ;;
    snap) mapfile -t counters < /proc/net/netstat; rc=$?; out=""  # builtins only: a snapshot delays nothing
          printf '%s\n' "${counters[@]}" > "$dir/nstat-$1.txt" ;;
    *) out="unknown tool $tool"; rc=127 ;;
  esac
  local end=${EPOCHREALTIME/./}
  out=${out//$'
'/ | }; out=${out//$'	'/ }
  printf '%s	%s	%s	%s	%s	%s	%s
' "$id" "$planned" "$start" "$end" "$rc" "$tool $*" "$out" >> "$log"
}
while IFS= read -r line; do
  IFS=$'	' read -r -a f <<< "$line"
  [ "${#f[@]}" -ge 3 ] || continue
  if [ "${f[0]}" = setup ]; then apply setup "${f[@]:1}"; continue; fi
  target=$((t0 + f[0]))
  sleep_until "$target"
  apply "$target" "${f[@]:1}"
done < "$dir/schedule.txt"
echo "done ${EPOCHREALTIME/./}" > "$dir/events.done"
"""

#: args: RUN_DIR PERIOD_US (bash). The sampler: at t, t + PERIOD, t + 2 PERIOD, ... prints '@ EPOCH'
#: (seconds, microsecond digits), ``ss -tinMOH`` and '%dev' + /proc/net/dev. ss is its only
#: process per sample: the clock, the file and the wait are builtins (``read -t`` on a FIFO),
#: because every fork costs the node CPU that its flows need (on a software-emulated Docker
#: host, date + cat + sleep cost more than ss itself). A sample that ends after the next one
#: was due makes the sampler skip the slots it missed, never run them back to back. The sampler
#: keeps to a tenth of the node's time: after a sample it waits at least 9 times as long as
#: the sample took (on a software-emulated host one ss costs ~0.1 s of CPU, and at 0.5 s on
#: two nodes the samplers took a quarter of the host's CPU from the flows), so where sampling
#: is that dear the samples come further apart (their times are in the file) and elsewhere
#: the period holds.
SAMPLER = r"""set -u
""" + _BASH_CLOCK + r"""dir=$1; period=$2
open_tick "$dir/.sampler-tick"
next=${EPOCHREALTIME/./}
while :; do
  began=${EPOCHREALTIME/./}
  printf '@ %s\n' "$EPOCHREALTIME"
  ss -tinMOH
  mapfile -t dev < /proc/net/dev
  printf '%%dev\n'; printf '%s\n' "${dev[@]}"
  now=${EPOCHREALTIME/./}
  next=$((next + period))
  if [ "$next" -le "$now" ]; then next=$((now + period - (now - next) % period)); fi
  while [ "$next" -lt $((now + 9 * (now - began))) ]; do next=$((next + period)); done
  sleep_until "$next"
done
"""

#: Shell lines that run "$@" recording, under $dir/$name: its start and end times, pid,
#: output (.json), errors (.err) and exit status (.rc). Shared by servers and clients.
_RECORDED_RUN = r"""date +%s.%N > "$dir/$name.start"
"$@" > "$dir/$name.json" 2> "$dir/$name.err" &
echo $! > "$dir/$name.pid"
wait $!
echo $? > "$dir/$name.rc"
date +%s.%N > "$dir/$name.end"
"""

#: args: RUN_DIR NAME PORT COMMAND... Starts the iperf3 server in the background and
#: returns once it listens on PORT, printing 'listening' and the node's clock (epoch
#: microseconds: the Docker host's, shared by every node); exit 1 with its error otherwise.
SERVER = r"""set -u
dir=$1; name=$2; port=$3; shift 3
mkdir -p "$dir"
if [ -n "$(ss -Hltn "sport = :$port")" ]; then echo "port $port is already in use on this node"; exit 1; fi
(
""" + _RECORDED_RUN + r""") > /dev/null 2>&1 &
i=0
while [ $i -lt 100 ]; do
  if [ -n "$(ss -Hltn "sport = :$port")" ]; then echo "listening $(date +%s%6N)"; exit 0; fi
  if [ -e "$dir/$name.rc" ]; then echo "the server exited: $(cat "$dir/$name.err" "$dir/$name.json")"; exit 1; fi
  sleep 0.05; i=$((i+1))
done
echo "the server does not listen on port $port after 5 s"; exit 1
"""

#: args: RUN_DIR NAME START_US COMMAND... Runs the iperf3 client (started detached) at
#: START_US, epoch microseconds of the Docker host's clock (the run's t0 + the flow's start);
#: while it waits, RUN_DIR/NAME.wait.pid names it, so that a stopped run never starts it later.
CLIENT = r"""set -u
dir=$1; name=$2; at=$3; shift 3
echo $$ > "$dir/$name.wait.pid"
left=$(( at - $(date +%s%6N) ))
if [ "$left" -gt 0 ]; then sleep "$((left / 1000000)).$(printf %06d $((left % 1000000)))"; fi
rm -f "$dir/$name.wait.pid"
""" + _RECORDED_RUN

#: Shell lines that apply RUN_DIR/restore.txt once (the lab as 'up' left it: tab-separated lines
#: 'restore', ID, ip|tc, ARGS...), logging each line to events.log as the agent does, then
#: rename it restore.applied. Shared by FINISH and RESTORE.
_APPLY_RESTORE = r"""if [ -s "$dir/restore.txt" ]; then
  tab=$(printf '\t')
  while IFS= read -r line; do
    set -f; saved=$IFS; IFS=$tab; set -- $line; IFS=$saved; set +f
    [ $# -ge 3 ] || continue
    id=$2; tool=$3; shift 3
    start=$(date +%s%6N)
    case "$tool" in ip|tc) out=$("$tool" "$@" 2>&1 </dev/null); rc=$? ;; *) out="unknown tool $tool"; rc=127 ;; esac
    out=$(printf '%s' "$out" | tr '\n\t' '  ')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" restore "$start" "$(date +%s%6N)" "$rc" "$tool $*" "$out" >> "$dir/events.log"
  done < "$dir/restore.txt"
  mv "$dir/restore.txt" "$dir/restore.applied"
fi
"""

#: args: RUN_DIR. Stops the node's event agent and puts the lab back (before the baseline
#: flows, which must run on the lab as 'up' made it).
RESTORE = r"""set -u
dir=$1
[ -e "$dir/events.pid" ] && kill "$(cat "$dir/events.pid")" 2>/dev/null
""" + _APPLY_RESTORE + r"""echo restored
"""

#: args: RUN_DIR GRACE. Waits up to GRACE seconds for clients and servers to end, then
#: stops everything this run started on the node (monitor, sampler, event agent, leftovers)
#: by pid, and applies RUN_DIR/restore.txt (the lab as 'up' left it: tab-separated lines
#: 'restore', ID, ip|tc, ARGS...), logging each line to events.log as the agent does.
FINISH = r"""set -u
dir=$1; grace=$2
[ -d "$dir" ] || { echo "stopped:"; exit 0; }
end=$(( $(date +%s) + grace ))
for f in "$dir"/*.pid; do
  [ -e "$f" ] || continue
  case "$f" in */monitor.pid|*/sampler.pid|*/events.pid|*/capture-*.pid) continue ;; esac
  pid=$(cat "$f")
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1; done
done
stopped=""
for f in "$dir"/*.pid; do
  [ -e "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    case "$f" in */monitor.pid|*/sampler.pid|*/events.pid|*/capture-*.pid) ;; *) stopped="$stopped $(basename "$f" .pid)" ;; esac
  fi
done
sleep 0.3
for f in "$dir"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
""" + _APPLY_RESTORE + r"""{
  echo "date=$(date +%s.%N)"
  echo "## tc -s qdisc"; tc -s qdisc show
  echo "## nstat"; nstat -asz
} > "$dir/info-end.txt" 2>&1
echo "stopped:$stopped"
"""

#: args: RUN_DIR SNAPLEN IFACE... Starts one tcpdump per interface (headers only: -s SNAPLEN,
#: written packet by packet: -U) into RUN_DIR/capture-IFACE.pcap, its pid in capture-IFACE.pid
#: (FINISH stops it without waiting, after the flows), and returns once each one says it
#: listens; exit 1 with tcpdump's own error otherwise.
CAPTURE = r"""set -u
dir=$1; snaplen=$2; shift 2
mkdir -p "$dir"
for iface in "$@"; do
  tcpdump -i "$iface" -s "$snaplen" -U -n -w "$dir/capture-$iface.pcap" 2> "$dir/capture-$iface.log" &
  echo $! > "$dir/capture-$iface.pid"
done
for iface in "$@"; do
  i=0
  until grep -q "listening on" "$dir/capture-$iface.log" 2>/dev/null; do
    if ! kill -0 "$(cat "$dir/capture-$iface.pid")" 2>/dev/null || [ $i -ge 100 ]; then
      echo "tcpdump on $iface did not start: $(tr '\n' ' ' < "$dir/capture-$iface.log")"; exit 1
    fi
    sleep 0.05; i=$((i+1))
  done
done
echo "capturing $*"
"""

#: args: FILE... Prints each file after a '%%% NAME' line (reads results mid-run).
CAT = r"""for f in "$@"; do echo "%%% $f"; cat "$f" 2>/dev/null; done
"""

#: args: PIDFILE... Stops the processes those files name (clients at Ctrl-C, a flow past its
#: deadline) and waits up to 3 s for them to end (iperf3 then writes its partial JSON).
KILL = r"""for f in "$@"; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
i=0
while [ $i -lt 30 ]; do
  alive=0
  for f in "$@"; do [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && exit 0
  sleep 0.1; i=$((i+1))
done
exit 0
"""

SCRIPTS = {"AGENT": AGENT, "SERVER": SERVER, "CLIENT": CLIENT, "RESTORE": RESTORE, "FINISH": FINISH, "CAT": CAT,
           "KILL": KILL, "CAPTURE": CAPTURE}
#: Scripts that need bash (the node image has it); they reach a node as an argument of one of
#: the above (EVENTS and SAMPLER: AGENT starts them), never as an exec of their own.
BASH_SCRIPTS = {"EVENTS": EVENTS, "SAMPLER": SAMPLER}
