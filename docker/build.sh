#!/usr/bin/env bash
# Build protloc's cpu and gpu images from this tree, tagged as pipeline.py expects
# (components/cluster.py: $PROTLOC_IMAGE:<version>-cpu and -gpu).
#   BASE_IMAGE=...   base for both images (default python:3.11-slim-bookworm)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
export DOCKER_BUILDKIT=0
for target in cpu gpu; do
    tag=$(.venv/bin/python -c "from components.cluster import images; print(images()['$target'])")
    echo "== building $tag on $BASE_IMAGE"
    docker build -q -f docker/Dockerfile --target "$target" --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$tag" .
done
