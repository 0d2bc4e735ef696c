# shellcheck shell=bash
# Shared settings for hack/cluster/*. Sourced, never executed.

HC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HC_DIR/../.." && pwd)

K8S_VERSION=v1.36.3
TRAEFIK_VERSION=3.7.15

# The cache key covers every pinned input of the build, so a version bump in a go.mod rebuilds and an
# unchanged tree never does. BUILD_REV is bumped by hand when build flags change.
BUILD_REV=1
hc_cache_key() {
	(
		cd "$HC_DIR"
		echo "rev=$BUILD_REV traefik=$TRAEFIK_VERSION"
		cat k8s/go.mod k8s/go.sum etcd/go.mod etcd/go.sum kwok/go.mod kwok/go.sum coredns/go.mod coredns/go.sum coredns/main.go
	) | sha256sum | cut -c1-16
}
HC_CACHE_ROOT=${FLAGGER_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flagger-rs}
HC_CACHE="$HC_CACHE_ROOT/cluster-$(hc_cache_key)"
HC_BIN="$HC_CACHE/bin"

# Runtime state of the one cluster on this machine.
# Several clusters can run side by side, one per netns (ports only clash within a netns): set FLAGGER_RS_NETNS
# to get another one. hack/e2e always uses its own.
HC_NETNS=${FLAGGER_RS_NETNS:-fr-e2e}
if [[ $HC_NETNS == fr-e2e ]]; then
	HC_STATE=${FLAGGER_RS_CLUSTER_DIR:-/tmp/flagger-rs-cluster}
else
	HC_STATE=${FLAGGER_RS_CLUSTER_DIR:-/tmp/flagger-rs-cluster-$HC_NETNS}
fi
HC_KUBECONFIG="$HC_STATE/admin.kubeconfig"
HC_NODE=kwok-node-0
POD_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
# Local thanks to the AnyIP pod route; kube-proxy only skips masquerade for sources inside the cluster CIDR.
SERVICE_SRC=10.244.255.254
DNS_IP=127.0.0.53

hc_log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
hc_die() { hc_log "ERROR: $*"; exit 1; }

# True while PID has not exited (a zombie has; init reaps it only every couple of seconds).
hc_alive() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z ]]
}

# Exact name match: `ip netns list` prints "name (id: N)".
hc_netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "${1:-$HC_NETNS}"; }

# Run inside the cluster's netns.
hc_in_ns() { ip netns exec "$HC_NETNS" "$@"; }

# wait_url NAME TIMEOUT_S CURL_ARGS... : bounded poll of a readiness URL from inside the netns.
wait_url() {
	local name=$1 timeout=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	until hc_in_ns curl -fsS -o /dev/null --max-time 2 "$@" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			hc_log "$name not ready after ${timeout}s"
			return 1
		fi
		# A short pause between probes, bounded by the deadline above; this is polling, not synchronisation.
		sleep 0.1
	done
	hc_log "$name ready"
}
