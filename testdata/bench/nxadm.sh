#!/usr/bin/env bash
# Measures what github.com/nxadm/tail and spraywatch's follower deliver
# across rename, copytruncate and quick rotations (see nxadm/main.go).
# The harness is a module of its own, so that spraywatch does not depend on
# nxadm/tail; it downloads it through the Go module proxy.
#   TRIALS=10 testdata/bench/nxadm.sh
set -euo pipefail
cd "$(dirname "$0")/nxadm"
export PATH="$PATH:/usr/local/go/bin"
go run . -trials "${TRIALS:-10}"
