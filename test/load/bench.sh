#!/usr/bin/env bash
# The standard xDS load matrix (docs/performance.md): `make bench` runs it
# after the Go benchmarks. It builds bin/sluice and bin/sluice-load, starts
# a test cluster (etcd, kube-apiserver, kube-controller-manager) in a
# private network namespace, writes 100 and then 1,000 services of 10
# endpoints into it and, for 100, 1,000 and 5,000 simulated Envoy proxies
# over delta and SotW ADS, measures endpoint flips, new services, a burst of
# 100 pod restarts in 1 s and a control-plane restart. The control plane
# runs on CPU 0 alone (taskset, GOMAXPROCS=1); the harness and the cluster
# on CPU 1. It prints a markdown table; JSON goes to test/load/results/.
#
# Trimmed to fit about 10 minutes on 2 cores: 5,000 proxies run with 100
# services only (5,000 × 1,000 needs 5,000 per-IP Envoy translations of the
# whole mesh: minutes of CPU to connect); the burst runs on the 1,000-proxy
# cases, the restart on the 5,000-proxy ones. Extra arguments go to
# sluice-load (see `bin/sluice-load --help`), e.g.
#
#   test/load/bench.sh --source file --services 100 --proxies 100
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}

"$GO" build -o bin/sluice ./cmd/sluice
"$GO" build -o bin/sluice-load ./test/load/cmd/sluice-load

exec bin/sluice-load \
	--source kube \
	--sluice bin/sluice \
	--services 100,1000 \
	--endpoints 10 \
	--proxies 100,1000,5000 \
	--protocols delta,sotw \
	--skip 5000x1000/delta,5000x1000/sotw \
	--flips 20 \
	--new-services 3 \
	--burst 100 --burst-window 1s \
	--burst-on 1000x100/delta,1000x100/sotw,1000x1000/delta,1000x1000/sotw \
	--restart-on 5000x100/delta,5000x100/sotw \
	--results test/load/results \
	"$@"
