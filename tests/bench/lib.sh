# Shared helpers for the benchmark scripts (sourced, not run).

# N distinct free loopback TCP ports, one per line (all sockets are held until every port is
# chosen, so the kernel cannot hand the same port out twice).
free_ports() {
  python3 -c 'import socket,sys
socks=[socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1",0))
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# Resident set size of a PID in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

now_ms() { date +%s%3N; }

# Sample the peak RSS (KiB) of the given PIDs every 200 ms into FILE until it is removed.
sample_peak_rss() {
  local file=$1; shift
  local peak=0
  while [ -e "$file" ]; do
    for p in "$@"; do
      r=$(rss_kib "$p"); [ "${r:-0}" -gt "$peak" ] && peak=$r
    done
    echo "$peak" > "$file.peak"
    sleep 0.2
  done
}

# Poll a command until it succeeds (at most N tenths of a second).
wait_for() {
  local tries=$1; shift
  for _ in $(seq 1 "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for: $*" >&2; return 1
}

# A fresh CA key secret (32 random bytes, hex, 0600) at FILE; prints FILE. Every registry that
# must create or use the mesh CA needs one (--ca-key-secret-file), as operators' nodes do.
ca_secret() {
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1")
  echo "$1"
}

# Does the registry at HTTP (host:port) have a mesh CA root yet?
has_ca_root() {
  curl -sf "http://$1/v1/connect/ca/roots" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["Roots"] else 1)'
}
