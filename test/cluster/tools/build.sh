#!/usr/bin/env bash
# Builds the pinned etcd, kube-apiserver and kube-controller-manager used by
# the test cluster (test/cluster) into a cache outside the repository:
#
#   ${SLUICE_TOOLS_CACHE:-$HOME/.cache/sluice-tools}/
#     etcd-<version>-<hash>/etcd
#     kube-<version>-<hash>/kube-apiserver, kube-controller-manager
#     bin-<etcd key>_<kube key>/   symlinks to the three binaries
#
# <hash> is a short hash of the tool module's go.mod and go.sum, so a version
# bump (or any dependency change) builds afresh and anything else reuses the
# cache. A cold build of Kubernetes takes about 15 minutes on 2 cores; progress
# is printed to stderr every 30 seconds. The last line on stdout is the bin
# directory; with --print-dir nothing else is printed on stdout.
#
# Usage: test/cluster/tools/build.sh [--print-dir]
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${SLUICE_TOOLS_CACHE:-${HOME:-/root}/.cache/sluice-tools}
go=${GO:-go}
quiet=false
interval=${SLUICE_TOOLS_PROGRESS_INTERVAL:-30} # seconds between progress lines
case "${1:-}" in
--print-dir) quiet=true ;;
"") ;;
*) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
esac

say() { $quiet || echo "build.sh: $*" >&2; }

# module_version prints the version a tool module requires of a module.
module_version() {
	sed -nE "s#^[[:space:]]*(require[[:space:]]+)?$2[[:space:]]+(v[^[:space:]]+).*#\2#p" "$1/go.mod" | head -n1
}

# recipe changes whenever the way this script builds changes (flags), so that
# the cache key changes with it.
recipe=1

# module_hash prints a short hash of a tool module's go.mod and go.sum.
module_hash() {
	{ echo "recipe $recipe"; cat "$1/go.mod" "$1/go.sum"; } | sha256sum | cut -c1-10
}

etcd_version=$(module_version "$tools_dir/etcd" go.etcd.io/etcd/server/v3)
kube_version=$(module_version "$tools_dir/kube" k8s.io/kubernetes)
if [[ -z $etcd_version || -z $kube_version ]]; then
	echo "build.sh: cannot read the pinned etcd/kubernetes versions from $tools_dir/*/go.mod" >&2
	exit 1
fi
etcd_key=etcd-$etcd_version-$(module_hash "$tools_dir/etcd")
kube_key=kube-$kube_version-$(module_hash "$tools_dir/kube")
bin_dir=$cache/bin-${etcd_key}_${kube_key}

mkdir -p "$cache"
# Serialise concurrent builds (two test packages, or make and go test).
exec 9>"$cache/.lock"
if ! flock -n 9; then
	say "waiting for another build in $cache to finish…"
	flock 9
fi

# build_with_progress LABEL DIR OUT_DIR LDFLAGS HINT PACKAGE... runs go build in
# DIR writing into a temporary directory that is renamed to OUT_DIR on success.
build_with_progress() {
	local label=$1 dir=$2 out=$3 ldflags=$4 hint=$5
	shift 5
	local tmp=$out.tmp.$$ log
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log=$tmp/.build.log
	local total
	total=$(cd "$dir" && "$go" list -deps "$@" 2>/dev/null | wc -l || true)
	say "building $label with $("$go" env GOVERSION) into $out (≈$total packages${hint:+; $hint})"
	local start=$SECONDS
	(cd "$dir" && exec "$go" build -v -ldflags "$ldflags" -o "$tmp/" "$@") >"$log" 2>&1 &
	local pid=$!
	# Kill the build if this script is interrupted.
	trap 'kill '"$pid"' 2>/dev/null; rm -rf '"$tmp"'' EXIT
	local next=$((SECONDS + interval))
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		if ((SECONDS >= next)); then
			local el=$((SECONDS - start)) done
			done=$(grep -c '^[a-z]' "$log" || true)
			local last
			last=$(tail -n1 "$log")
			say "still building $label ($((el / 60))m$((el % 60))s, $done of ≈$total packages compiled${last:+, now $last})…"
			next=$((SECONDS + interval))
		fi
	done
	if ! wait "$pid"; then
		echo "build.sh: building $label failed; go build output:" >&2
		grep -v '^[a-z][^ ]*$' "$log" | tail -n 50 >&2 || true
		exit 1
	fi
	trap - EXIT
	rm -f "$log"
	rm -rf "$out"
	mv "$tmp" "$out"
	say "built $label in $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"
}

if [[ ! -x $cache/$etcd_key/etcd ]]; then
	build_with_progress "etcd $etcd_version" "$tools_dir/etcd" "$cache/$etcd_key" "" "" .
else
	say "etcd $etcd_version cached in $cache/$etcd_key"
fi

if [[ ! -x $cache/$kube_key/kube-apiserver || ! -x $cache/$kube_key/kube-controller-manager ]]; then
	# The -X flags make /version report the pinned release instead of v0.0.0.
	minor=${kube_version#v1.}
	minor=${minor%%.*}
	vpkg=k8s.io/component-base/version
	ldflags="-s -w -X $vpkg.gitVersion=$kube_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"
	build_with_progress "kube-apiserver and kube-controller-manager $kube_version" "$tools_dir/kube" "$cache/$kube_key" \
		"$ldflags" "a cold build takes about 15 minutes on 2 cores" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
else
	say "kube-apiserver and kube-controller-manager $kube_version cached in $cache/$kube_key"
fi

if [[ ! -d $bin_dir ]]; then
	tmp=$bin_dir.tmp.$$
	rm -rf "$tmp"
	mkdir -p "$tmp"
	ln -s "../$etcd_key/etcd" "$tmp/etcd"
	ln -s "../$kube_key/kube-apiserver" "$tmp/kube-apiserver"
	ln -s "../$kube_key/kube-controller-manager" "$tmp/kube-controller-manager"
	mv "$tmp" "$bin_dir"
fi
echo "$bin_dir"
