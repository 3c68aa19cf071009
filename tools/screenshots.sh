#!/usr/bin/env bash
# Screenshots of the HTML pages of the last local run (its last_summary.json) in headless
# Chromium (Debian's `chromium`), one PNG per page in build/screenshots/, sizes printed.
#   tools/screenshots.sh [ROOT]     ROOT: the run's --root (default runs/local)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-runs/local}
BROWSER=${BROWSER:-chromium}
command -v "$BROWSER" >/dev/null || { echo "no $BROWSER here (apt-get install chromium)"; exit 2; }
mkdir -p build/screenshots
pages=$(.venv/bin/python -c "import json; print('\n'.join(json.load(open('$ROOT/last_summary.json'))['pages']))")
for page in $pages; do
    task=$(basename "$(dirname "$(dirname "$page")")")  # .../<task>/out/report.html
    shot="build/screenshots/$task.png"
    # --disable-background-networking etc.: the pages are self-contained, nothing is fetched.
    "$BROWSER" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
        --window-size=1100,2600 --screenshot="$shot" "file://$(realpath "$page")" 2>/dev/null
    echo "$task: page $(( $(stat -c %s "$page") / 1024 )) KB, screenshot $shot $(( $(stat -c %s "$shot") / 1024 )) KB"
done
