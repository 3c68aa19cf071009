#!/usr/bin/env bash
# Build protloc's cpu and gpu images from this tree, tagged with the code version the tasks check
# (components/cluster.py: REPOSITORY:<version>-<source hash>-cpu|gpu), and push them if asked.
#   BASE_IMAGE=...   base for both images (default python:3.11-slim-bookworm)
#   REGISTRY=...     push to REGISTRY/protloc (make push REGISTRY=registry.example.org/team)
#   PUSH=1           push after building (make push)
# The tags need only the system Python (no venv, no torch): they hash the sources.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
PYTHON=${PYTHON:-python3}
repository=$("$PYTHON" -c "import sys; sys.path.insert(0, '.'); from components.cluster import REGISTRY, IMAGE_NAME; print(f\"{sys.argv[1].rstrip('/') or REGISTRY}/{IMAGE_NAME}\")" "${REGISTRY:-}")
export DOCKER_BUILDKIT=0
for target in cpu gpu; do
    tag=$("$PYTHON" -c "import sys; sys.path.insert(0, '.'); from components.cluster import images; print(images(sys.argv[1])[sys.argv[2]])" "$repository" "$target")
    echo "== building $tag on $BASE_IMAGE"
    docker build -q -f containers/Dockerfile --target "$target" --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$tag" .
    if [ "${PUSH:-0}" = 1 ]; then
        echo "== pushing $tag"
        docker push "$tag"
    fi
done
