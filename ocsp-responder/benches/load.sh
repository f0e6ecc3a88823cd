#!/usr/bin/env bash
# Load comparison on loopback, all in one run, with wrk (50 connections, 2 threads):
#
#   1. eport-ocsp, pre-signed, GET        (examples/load_server.rs: in-memory source)
#   2. eport-ocsp, pre-signed, POST
#   3. eport-ocsp, nonce POST             (signed per request)
#   4. openssl ocsp -index … -multi 2, POST and GET (same certificates; a fresh one per run,
#      in its own network namespace because -port binds every interface)
#   5. nginx serving a static file of the size of our response (the ceiling)
#
# For each: requests/s, p50 and p99 latency (wrk --latency), and the server's CPU time per
# request, from utime+stime in /proc/<pid>/stat (and its children's) before and after.
#
# Usage (as root: unshare -n and apt-get need it):
#   ocsp-responder/benches/load.sh [SECONDS=10] [CONNECTIONS=50] [CERTIFICATES=1000]
#   PROFILE=dev ocsp-responder/benches/load.sh    # skip the release build (slower responder)
#   LOAD_SERVER=/tmp/load_server.old ocsp-responder/benches/load.sh   # a load_server built before
#
# wrk's start-up probe (a connection closed without a request) hangs `openssl ocsp` 3.0 at
# 100% CPU; every wrk script here replaces wrk.resolve so that no probe is made.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-10}
connections=${2:-50}
certificates=${3:-1000}
profile=${PROFILE:-release}
threads=2

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v openssl >/dev/null || need+=(openssl)
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -n "${LOAD_SERVER:-}" ]; then
  server_bin=$LOAD_SERVER
elif [ "$profile" = release ]; then
  echo "building the load server ($profile)..." >&2
  cargo build -q --release -p ocsp-responder --example load_server
  server_bin=target/release/examples/load_server
else
  echo "building the load server ($profile)..." >&2
  cargo build -q -p ocsp-responder --example load_server
  server_bin=target/debug/examples/load_server
fi

work=$(mktemp -d /tmp/ocsp-load.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- wrk scripts: no start-up probe; GET a path, or POST a file -------------------------------
cat >"$work/noprobe.lua" <<'EOF'
wrk.resolve = function(host, service) wrk.addrs = wrk.lookup(host, service) end
EOF
make_get() { # $1 = path
  { cat "$work/noprobe.lua"; printf 'wrk.path = "%s"\n' "$1"; } >"$work/get.lua"
}
make_post() { # $1 = request file, $2 = script
  { cat "$work/noprobe.lua"
    printf 'local f = io.open("%s", "rb"); local body = f:read("*all"); f:close()\n' "$1"
    printf 'wrk.method = "POST"; wrk.body = body; wrk.headers["Content-Type"] = "application/ocsp-request"\n'
  } >"$2"
}

# --- measurement (also run inside the namespace for openssl) ---------------------------------
cat >"$work/measure.sh" <<'EOF'
# ticks PID: utime+stime of PID and its direct children, in clock ticks.
ticks() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
    [ -r "/proc/$p/stat" ] || continue
    total=$(( total + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}') ))
  done
  echo "$total"
}
# measure NAME PID WRK-ARGS...: one wrk run against the server PID; prints a table row.
measure() {
  local name=$1 pid=$2; shift 2
  local before after out requests rps p50 p99 errors hz cpu
  hz=$(getconf CLK_TCK)
  before=$(ticks "$pid")
  out=$(wrk "$@" 2>&1)
  after=$(ticks "$pid")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | paste -sd ';' - || true)
  if [ -n "$requests" ] && [ "$requests" -gt 0 ]; then
    cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
  else
    cpu=n/a
  fi
  printf '%-28s %10s %9s %9s %12s  %s\n' "$name" "${rps:-0}" "${p50:--}" "${p99:--}" "$cpu" "${errors:-}"
}
EOF
# shellcheck source=/dev/null
. "$work/measure.sh"
wrk_args=(-t"$threads" -c"$connections" -d"${seconds}s" --latency)

# --- our responder ---------------------------------------------------------------------------
port=$(free_port)
"$server_bin" "$work/pki" "$port" "$certificates" >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 1 600); do
  grep -q '^ready' "$work/server.log" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.2
done
grep -q '^ready' "$work/server.log" || { echo "load server did not start" >&2; exit 1; }
size=$(stat -c %s "$work/pki/response.der")
echo "# $(nproc) CPUs; $certificates certificates; wrk -t$threads -c$connections -d${seconds}s; response $size octets"
printf '%-28s %10s %9s %9s %12s  %s\n' "server" "req/s" "p50" "p99" "CPU µs/req" "errors"

make_get "$(cat "$work/pki/get-path.txt")"
make_post "$work/pki/req.der" "$work/post.lua"
make_post "$work/pki/req-nonce.der" "$work/nonce.lua"
measure "eport-ocsp GET (pre-signed)" "$server" "${wrk_args[@]}" -s "$work/get.lua" "http://127.0.0.1:$port"
measure "eport-ocsp POST (pre-signed)" "$server" "${wrk_args[@]}" -s "$work/post.lua" "http://127.0.0.1:$port/ocsp"
measure "eport-ocsp POST (nonce)" "$server" "${wrk_args[@]}" -s "$work/nonce.lua" "http://127.0.0.1:$port/ocsp"
kill "$server"; wait "$server" 2>/dev/null || true

# --- openssl ocsp, a fresh one per run, inside its own network namespace -------------------------
# Its GET path is the base64 right after the first slash.
{ cat "$work/noprobe.lua"; printf 'wrk.path = "%s"\n' "$(sed 's|^/ocsp||' "$work/pki/get-path.txt")"; } >"$work/get-openssl.lua"
for method in POST GET; do
  unshare -n bash -c '
    set -euo pipefail
    work=$1; method=$2; shift 2
    . "$work/measure.sh"
    ip link set lo up
    cd "$work/pki"
    openssl ocsp -index index.txt -port 8888 -CA issuing.pem -rsigner ocsp.pem -rkey ocsp.key \
      -ndays 1 -multi 2 >/dev/null 2>"$work/openssl.log" &
    ocsp=$!
    for _ in $(seq 1 50); do [ "$(pgrep -c -P "$ocsp" || true)" -ge 2 ] && break; sleep 0.1; done
    sleep 0.5
    if [ "$method" = POST ]; then script=$work/post.lua; url=http://127.0.0.1:8888/
    else script=$work/get-openssl.lua; url=http://127.0.0.1:8888; fi
    measure "openssl ocsp -multi 2 $method" "$ocsp" "$@" -s "$script" "$url"
    pkill -P "$ocsp" || true; kill "$ocsp" 2>/dev/null || true
  ' _ "$work" "$method" "${wrk_args[@]}"
done

# --- nginx: a static file of our response's size (the ceiling) --------------------------------------
mkdir -p "$work/nginx/www" "$work/nginx/logs" "$work/nginx/tmp"
cp "$work/pki/response.der" "$work/nginx/www/resp"
chmod -R a+rX "$work"   # nginx workers run as an unprivileged user
nport=$(free_port)
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp;
  proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp;
  uwsgi_temp_path $work/nginx/tmp;
  scgi_temp_path $work/nginx/tmp;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nport;
    root $work/nginx/www;
    location / { default_type application/ocsp-response; }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
pids+=("$nginx_pid")
sleep 1
{ cat "$work/noprobe.lua"; printf 'wrk.path = "/resp"\n'; } >"$work/nginx.lua"
measure "nginx static ($size octets)" "$nginx_pid" "${wrk_args[@]}" -s "$work/nginx.lua" "http://127.0.0.1:$nport"
