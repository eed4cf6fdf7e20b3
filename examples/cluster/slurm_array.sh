#!/bin/bash
# A SLURM array job: N nodes join one archbench study on one PostgreSQL store, each node
# running one `archbench worker` per GPU it was given (worker k on GPU k). Start the study
# once beforehand (or let the first worker set it up: they take turns under a lock):
#
#   archbench validate experiments/degradation.yaml --profile gpu --storage "$ARCHBENCH_DB"
#   sbatch --array=0-3 examples/cluster/slurm_array.sh      # 4 nodes x 8 GPUs = 32 workers
#
# The workers share nothing but the database: a node that dies leaves trials whose
# heartbeats go stale; the others retry them, resuming from the checkpoints in a shared
# --results-dir. `archbench results` on any machine reads the store.
#SBATCH --job-name=archbench
#SBATCH --nodes=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --output=archbench-%A_%a.log
set -euo pipefail

SPEC=${SPEC:-experiments/degradation.yaml}
PROFILE=${PROFILE:-gpu}
# postgresql://user@db.example.org/archbench; the password comes from PGPASSWORD (or a
# ${VAR} reference in the URL), never from this file.
: "${ARCHBENCH_DB:?set ARCHBENCH_DB to the PostgreSQL URL of the store}"
RESULTS=${RESULTS:-/shared/archbench/checkpoints}  # on a file system every node mounts

GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
for ((gpu = 0; gpu < GPUS; gpu++)); do
  archbench worker "$SPEC" --profile "$PROFILE" --storage "$ARCHBENCH_DB" \
    --results-dir "$RESULTS" --device "cuda:$gpu" --fuse-seeds --quiet &
done
wait
