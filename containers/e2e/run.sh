#!/usr/bin/env bash
# Build protloc's images and run the compose flow for real, then rerun the thresholds step alone
# from the predictions in S3. Needs a running Docker engine and docker-compose.
#   BASE_IMAGE=...   base for every image (default python:3.11-slim-bookworm)
#   E2E_S3=moto      use moto's S3 server instead of SeaweedFS (where its image cannot be pulled)
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
# The images' tag: the code version (containers/build.sh), computed with the system Python.
VERSION=$(python3 -c "import sys; sys.path.insert(0, '.'); from components.cluster import code_tag; print(code_tag())")
IMAGE=${PROTLOC_IMAGE:-ghcr.io/protloc/protloc}
mkdir -p build
ENV_FILE=build/e2e.env
# A throwaway password for this run only; never committed, never printed.
# The run's settings: a small data set and schedule, so it finishes in minutes on a CPU.
{
    printf 'S3_ACCESS_KEY=protloc-e2e\nS3_SECRET_KEY=%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    printf 'PROTLOC_VERSION=%s\nPROTLOC_IMAGE=%s\nBASE_IMAGE=%s\n' "$VERSION" "$IMAGE" "$BASE_IMAGE"
    printf 'PROTLOC_BUCKET=protloc\nPROTLOC_DATA_ROOT=s3://protloc/data\nPROTLOC_RUN=s3://protloc/runs/e2e\n'
    printf 'PROTLOC_SYNTHETIC=160:24:128\nPROTLOC_SCHEDULE=96:16:1,112:16:1,128:16:1\nPROTLOC_FOLDS=1\n'
    printf 'PROTLOC_THRESHOLD_METHOD=per_class\nPROTLOC_ALPHA=0.1\nPROTLOC_RARE_BELOW=10\nPROTLOC_TTA=2\nPROTLOC_WORKERS=0\nPROTLOC_GPUS=1\n'
    printf 'PROTLOC_PREDICT_IMAGES=s3://protloc/data/test\n'
} > "$ENV_FILE"
PROTLOC_IMAGE="$IMAGE" BASE_IMAGE="$BASE_IMAGE" bash containers/build.sh
echo "== no credential in the images (layers, build history, config) and a non-root user"
password=$(grep '^S3_SECRET_KEY=' "$ENV_FILE" | cut -d= -f2)
for tag in cpu gpu; do
    img="$IMAGE:$VERSION-$tag"
    if docker save "$img" | grep -a -q -F -e "$password" -e "AWS_SECRET_ACCESS_KEY=" \
        || docker history --no-trunc "$img" | grep -q -E "AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)" \
        || docker image inspect "$img" --format '{{json .Config.Env}}' | grep -q AWS_; then
        echo "a credential (or an AWS_* setting) is in $img"; exit 1
    fi
    echo "$img: no credential; runs as $(docker run --rm --entrypoint id "$img" -u)"
done
files=(-f containers/compose.yaml)
[ "${E2E_S3:-seaweedfs}" = moto ] && files+=(-f containers/e2e/compose.e2e.yaml)
# With the NVIDIA runtime, train and predict get the GPUs; without it they run on the CPU.
if docker info 2>/dev/null | grep -q nvidia; then
    files+=(-f containers/compose.gpu.yaml)
else
    echo "== no NVIDIA runtime in this engine: train and predict run on the CPU"
fi
docker-compose "${files[@]}" --env-file "$ENV_FILE" --profile predict config > build/compose.run.yaml
compose=(docker-compose -p protloc-e2e -f build/compose.run.yaml --env-file "$ENV_FILE")
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
start=$(date +%s)
echo "== docker-compose up (each step waits for the previous one to complete)"
"${compose[@]}" up -d
status=0
for svc in submit bundle; do
    code=$(docker wait "$("${compose[@]}" ps -q "$svc")")
    echo "== $svc exited with $code after $(( $(date +%s) - start )) s"
    [ "$code" = 0 ] || status=$code
done
"${compose[@]}" ps
for svc in split train thresholds submit bundle; do
    echo "--- $svc (last lines)"; "${compose[@]}" logs --no-color "$svc" | tail -n 3
done
[ "$status" = 0 ] || exit 1
echo "== thresholds alone, alpha 0.3, from the predictions already in S3"
PROTLOC_ALPHA=0.3 docker-compose -p protloc-e2e "${files[@]}" --env-file "$ENV_FILE" \
    run --rm --no-deps thresholds 2>&1 | tail -n 2
echo "== the bundle applied to the test images"
"${compose[@]}" run --rm --no-deps predict 2>&1 | tail -n 2
"${compose[@]}" down -v
