#!/usr/bin/env bash
# Exercises NVIDIA confidential-computing attestation on a machine with an
# NVIDIA GPU and driver: NVML start time, CC capability/state/ready state,
# whether the certificate and attestation report calls work, and the
# verifier's verdict (cmd/gpucheck). Changes nothing on the GPU.
# Usage: scripts/gpu-check.sh [-strict]
# Needs Go and gcc (cgo) to build, or a prebuilt binary in $GPUCHECK.
# On the H200 it ran on (2026-11-26, driver 580.159.04, CC off) it printed "CC capable, CC off",
# both calls failing, and "verdict: GPU evidence rejected: tier tee at most".
set -uo pipefail
cd "$(dirname "$0")/.."

if command -v nvidia-smi >/dev/null; then
  echo "== nvidia-smi"
  nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader || true
  nvidia-smi conf-compute -f 2>&1 || true    # CC mode
  nvidia-smi conf-compute -grs 2>&1 || true  # GPU ready state
else
  echo "== no nvidia-smi on PATH"
fi

bin=${GPUCHECK:-}
if [ -z "$bin" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  bin=$tmp/gpucheck
  echo "== building cmd/gpucheck (cgo)"
  CGO_ENABLED=1 CGO_CFLAGS=${CGO_CFLAGS:--Wno-deprecated-declarations} go build -o "$bin" ./cmd/gpucheck || exit 1
fi

echo "== gpucheck"
"$bin" "$@"
rc=$?

if command -v go >/dev/null; then
  echo "== go test (real NVML and the mock GPUs)"
  CGO_ENABLED=1 CGO_CFLAGS=${CGO_CFLAGS:--Wno-deprecated-declarations} \
    go test -count=1 -v -run 'TestCollectRealNVML|TestAccepted|TestNVIDIASample' ./attest/nvidia/ 2>&1 | grep -E '^(---|ok|FAIL|\s+\S+_test.go)' || rc=1
fi
exit $rc
