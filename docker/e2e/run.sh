#!/usr/bin/env bash
# Build protloc's images and run the compose flow for real, then rerun the thresholds step alone
# from the predictions in S3. Needs a running Docker engine and docker-compose.
#   BASE_IMAGE=...   base for every image (default python:3.11-slim-bookworm)
#   E2E_S3=moto      use moto's S3 server instead of MinIO (where MinIO's image cannot be pulled)
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
# The images' tag: the code version (docker/build.sh), computed with the system Python.
VERSION=$(python3 -c "import sys; sys.path.insert(0, '.'); from components.cluster import code_tag; print(code_tag())")
IMAGE=${PROTLOC_IMAGE:-ghcr.io/protloc/protloc}
mkdir -p build
ENV_FILE=build/e2e.env
# A throwaway password for this run only; never committed, never printed.
printf 'MINIO_ROOT_USER=protloc-e2e\nMINIO_ROOT_PASSWORD=%s\nPROTLOC_VERSION=%s\nPROTLOC_IMAGE=%s\nBASE_IMAGE=%s\n' \
    "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" "$VERSION" "$IMAGE" "$BASE_IMAGE" > "$ENV_FILE"
PROTLOC_IMAGE="$IMAGE" BASE_IMAGE="$BASE_IMAGE" bash docker/build.sh
echo "== no credential in the images (layers, build history, config) and a non-root user"
password=$(grep '^MINIO_ROOT_PASSWORD=' "$ENV_FILE" | cut -d= -f2)
for tag in cpu gpu; do
    img="$IMAGE:$VERSION-$tag"
    if docker save "$img" | grep -a -q -F -e "$password" -e "AWS_SECRET_ACCESS_KEY=" \
        || docker history --no-trunc "$img" | grep -q -E "AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)" \
        || docker image inspect "$img" --format '{{json .Config.Env}}' | grep -q AWS_; then
        echo "a credential (or an AWS_* setting) is in $img"; exit 1
    fi
    echo "$img: no credential; runs as $(docker run --rm --entrypoint id "$img" -u)"
done
files=(-f docker/compose.yaml)
[ "${E2E_S3:-minio}" = moto ] && files+=(-f docker/e2e/compose.e2e.yaml)
# Without the NVIDIA runtime, Docker refuses GPU reservations: drop them (train and infer then
# run on the CPU) and say so.
docker-compose "${files[@]}" --env-file "$ENV_FILE" config > build/compose.run.yaml
if ! docker info 2>/dev/null | grep -q nvidia; then
    echo "== no NVIDIA runtime in this engine: train and infer run on the CPU"
    .venv/bin/python - <<'PY'
import yaml
doc = yaml.safe_load(open("build/compose.run.yaml"))
for svc in doc["services"].values():
    svc.pop("deploy", None)
yaml.safe_dump(doc, open("build/compose.run.yaml", "w"), sort_keys=False)
PY
fi
compose=(docker-compose -p protloc-e2e -f build/compose.run.yaml --env-file "$ENV_FILE")
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
start=$(date +%s)
echo "== docker-compose up (each step waits for the previous one to complete)"
"${compose[@]}" up -d
status=$(docker wait "$("${compose[@]}" ps -q submit)")
echo "== flow finished in $(( $(date +%s) - start )) s; submit exited with $status"
"${compose[@]}" ps
for svc in split prepare train-1 train-2 train-3 infer thresholds submit; do
    echo "--- $svc (last lines)"; "${compose[@]}" logs --no-color "$svc" | tail -n 3
done
[ "$status" = 0 ] || exit 1
echo "== thresholds alone, alpha 0.3, from the predictions already in S3"
"${compose[@]}" run --rm --no-deps thresholds --predictions s3://protloc/run/infer \
    --split s3://protloc/run/split --out s3://protloc/run/thresholds-a03 --alpha 0.3 2>&1 | tail -n 2
"${compose[@]}" down -v
