#!/usr/bin/env bash
# EMR bootstrap action: Python 3.11 and one hmm-em bundle's wheel on every node.
#
#   bootstrap.sh s3://bucket/prefix/bundle/<code version>
#
# The cluster config (hmm.orchestration.decisions.job_flow_config) runs it with the bundle it belongs to.
# EMR 7.x nodes run Amazon Linux 2023, whose python3 is 3.9; hmm-em needs 3.11, so the wheel
# goes into python3.11, which the cluster's spark-env makes Spark's driver and executor Python
# (PYSPARK_PYTHON=/usr/bin/python3.11). EMR brings Spark itself: the wheel's `emr` extra adds
# what Spark's Arrow path, S3 and the report need, pinned by the bundle's constraints.txt.
set -euo pipefail

log() { echo "hmm-em bootstrap: $*" >&2; }

if [[ $# -ne 1 || $1 != s3://* ]]; then
  echo "usage: $0 s3://bucket/prefix/bundle/<code version>" >&2
  exit 2
fi
bundle=${1%/}
version=${bundle##*/}
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

log "installing Python 3.11"
sudo dnf install -y -q python3.11 python3.11-pip

log "fetching the wheel of hmm-em $version from $bundle"
aws s3 cp --recursive --only-show-errors "$bundle/" "$workdir/" \
  --exclude '*' --include 'hmm_em-*.whl' --include constraints.txt
wheels=("$workdir"/hmm_em-*.whl)
if [[ ${#wheels[@]} -ne 1 || ! -f ${wheels[0]} || ! -f $workdir/constraints.txt ]]; then
  log "$bundle must hold exactly one hmm_em-*.whl and constraints.txt (upload it with make upload)"
  exit 1
fi

log "installing $(basename "${wheels[0]}")"
sudo python3.11 -m pip install --quiet --no-cache-dir --constraint "$workdir/constraints.txt" "${wheels[0]}[emr]"

# The steps of a training run this version: a node with another one would mix code versions.
installed=$(python3.11 -c 'import hmm; print(hmm.__version__)')
if [[ $installed != "$version" ]]; then
  log "installed hmm-em $installed, but the bundle is $version"
  exit 1
fi
# Compile every kernel once per node into the cache the steps read (CLUSTER_NUMBA_CACHE in
# hmm/orchestration/decisions.py, handed to Spark by the cluster config): without it each step's driver and
# executors would compile for tens of seconds. Sticky and world-writable, like /tmp: the steps run
# as another user and may add kernels for argument types the warm-up did not meet.
numba_cache=/var/cache/hmm-em/numba
sudo mkdir -p "$numba_cache"
sudo chmod 1777 "$numba_cache"
NUMBA_CACHE_DIR=$numba_cache python3.11 -m hmm.core.warmup
log "hmm-em $installed ready for /usr/bin/python3.11, kernels cached in $numba_cache"
