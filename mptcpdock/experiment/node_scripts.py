"""The fixed shell scripts ``mptcpdock run`` executes inside nodes.

They are constant text: every value (paths, ports, the iperf3 command line) arrives as a
positional argument, never as shell code. Every process they start in the background
writes its pid to ``RUN_DIR/NAME.pid`` so that :data:`FINISH` (and Ctrl-C) can stop it.
Files in ``RUN_DIR`` (``/tmp/mptcpdock-run/<results name>`` in the node) are copied out
at the end.
"""

from __future__ import annotations

#: args: RUN_DIR MONITOR(0|1) PERIOD. Records the node's settings, starts
#: ``ip -ts mptcp monitor`` (every line timestamped) when asked, and ONE sampler loop
#: (``ss -tinMOH`` + ``/proc/net/dev`` every PERIOD seconds), then returns.
AGENT = r"""set -u
dir=$1; monitor=$2; period=$3
mkdir -p "$dir"
{
  echo "date=$(date +%s.%N) tz=$(date +%z) kernel=$(uname -r)"
  ip -V; iperf3 --version 2>&1 | head -n 1
  echo "## sysctls"
  for key in net.mptcp.enabled net.mptcp.scheduler net.mptcp.path_manager net.mptcp.checksum_enabled \
      net.ipv4.tcp_congestion_control net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.core.rmem_max \
      net.core.wmem_max net.ipv4.tcp_no_metrics_save net.ipv4.ip_forward net.ipv4.conf.all.rp_filter; do
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
(
  while :; do
    echo "@ $(date +%s.%N)"
    ss -tinMOH
    echo "%dev"
    cat /proc/net/dev
    sleep "$period"
  done
) > "$dir/samples.txt" 2>&1 &
echo $! > "$dir/sampler.pid"
sleep 0.1
echo started
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
#: returns once it listens on PORT (exit 1 with its error otherwise).
SERVER = r"""set -u
dir=$1; name=$2; port=$3; shift 3
if [ -n "$(ss -Hltn "sport = :$port")" ]; then echo "port $port is already in use on this node"; exit 1; fi
(
""" + _RECORDED_RUN + r""") > /dev/null 2>&1 &
i=0
while [ $i -lt 100 ]; do
  if [ -n "$(ss -Hltn "sport = :$port")" ]; then echo listening; exit 0; fi
  if [ -e "$dir/$name.rc" ]; then echo "the server exited: $(cat "$dir/$name.err" "$dir/$name.json")"; exit 1; fi
  sleep 0.05; i=$((i+1))
done
echo "the server does not listen on port $port after 5 s"; exit 1
"""

#: args: RUN_DIR NAME COMMAND... Runs the iperf3 client (started detached, at its time).
CLIENT = r"""set -u
dir=$1; name=$2; shift 2
""" + _RECORDED_RUN

#: args: RUN_DIR GRACE. Waits up to GRACE seconds for clients and servers to end, then
#: stops everything this run started on the node (monitor, sampler, leftovers) by pid.
FINISH = r"""set -u
dir=$1; grace=$2
[ -d "$dir" ] || { echo "stopped:"; exit 0; }
end=$(( $(date +%s) + grace ))
for f in "$dir"/*.pid; do
  [ -e "$f" ] || continue
  case "$f" in */monitor.pid|*/sampler.pid) continue ;; esac
  pid=$(cat "$f")
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do sleep 0.1; done
done
stopped=""
for f in "$dir"/*.pid; do
  [ -e "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    case "$f" in */monitor.pid|*/sampler.pid) ;; *) stopped="$stopped $(basename "$f" .pid)" ;; esac
  fi
done
sleep 0.3
for f in "$dir"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
{
  echo "date=$(date +%s.%N)"
  echo "## tc -s qdisc"; tc -s qdisc show
  echo "## nstat"; nstat -asz
} > "$dir/info-end.txt" 2>&1
echo "stopped:$stopped"
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

SCRIPTS = {"AGENT": AGENT, "SERVER": SERVER, "CLIENT": CLIENT, "FINISH": FINISH, "CAT": CAT, "KILL": KILL}
