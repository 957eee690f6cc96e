#!/usr/bin/env bash
# gimp-dialog-picture.sh: retake docs/images/gimp_dialog.png, the Neural Style dialog of a real
# GIMP 3 (gimp-env.sh's chroot, on a virtual display) with The Starry Night chosen as the style
# and "Advanced" expanded. Needs what gimp-env.sh needs (root); takes about half a minute.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
VENV=${NST_GIMP_VENV:-$REPO/.venv}
OUT=${1:-$REPO/docs/images/gimp_dialog.png}
SHARED=$(cd "$REPO/../shared" && pwd)
WORK=$(mktemp -d /tmp/nst-gimp-picture.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
profile=$WORK/home/.config/GIMP/3.0
mkdir -p "$profile/plug-ins"
echo '(show-welcome-dialog no)' >"$profile/gimprc"
HOME=$WORK/home "$VENV/bin/nst-core" gimp install --gimp-dir "$profile/plug-ins" >/dev/null
cat >"$WORK/spec.json" <<JSON
{"home": "$WORK/home", "image": "$SHARED/images/tubingen.jpg", "results": "$WORK/results.json",
 "runs": [{"props": {"style-file": "$SHARED/images/starry_night.jpg"}, "expand_advanced": true,
           "screenshot": "$WORK/dialog.png", "keys": ["Escape"]}]}
JSON
NST_GIMP_VENV=$VENV bash "$HERE/gimp-env.sh" run python3 "$HERE/gimp_dialog.py" "$WORK/spec.json"
# a palette of 128 colours keeps the PNG small (the dialog has few colours)
"$VENV/bin/python" -c "import sys; from PIL import Image; \
Image.open(sys.argv[1]).convert('RGB').quantize(128).save(sys.argv[2], optimize=True)" "$WORK/dialog.png" "$OUT"
echo "gimp-dialog-picture.sh: wrote $OUT" >&2
