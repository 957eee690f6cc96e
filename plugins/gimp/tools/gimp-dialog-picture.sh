#!/usr/bin/env bash
# gimp-dialog-picture.sh [FOLDER]: retake the README's pictures of the plug-in's dialogs in a real
# GIMP 3 (gimp-env.sh's chroot, on a virtual display), in one GIMP start, into FOLDER (default
# docs/images):
#   gimp_instant.png  Instant Style on Tübingen with The Starry Night, once its preview is drawn;
#   gimp_regions.png  Paint by Region: The Starry Night on the channel "left", The Scream on "right";
#   gimp_dialog.png   Paint Like a Painting with The Starry Night and "Advanced" expanded (last: the
#                     click on "Advanced" leaves the pointer over the dialog, and a tooltip).
# Needs what gimp-env.sh needs (root); takes about a minute.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
VENV=${NST_GIMP_VENV:-$REPO/.venv}
OUT=${1:-$REPO/docs/images}
SHARED=$(cd "$REPO/../shared" && pwd)
WORK=$(mktemp -d /tmp/nst-gimp-picture.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
profile=$WORK/home/.config/GIMP/3.0
mkdir -p "$profile/plug-ins"
echo '(show-welcome-dialog no)' >"$profile/gimprc"
HOME=$WORK/home "$VENV/bin/nst-core" gimp install --gimp-dir "$profile/plug-ins" >/dev/null
cat >"$WORK/spec.json" <<JSON
{"home": "$WORK/home", "image": "$SHARED/images/tubingen.jpg", "results": "$WORK/results.json",
 "runs": [{"procedure": "python-fu-nst-instant-style", "props": {"style-file": "$SHARED/images/starry_night.jpg"},
           "keys": [{"wait_for": "drawn"}, {"screenshot": "$WORK/gimp_instant.png"}, "Escape"]},
          {"procedure": "python-fu-nst-region-style", "channels": {"left": [0, 0, 512, 768], "right": [512, 0, 512, 768]},
           "props": {"painting-1": "$SHARED/images/starry_night.jpg", "region-1": "channel:left",
                     "painting-2": "$SHARED/images/the_scream.jpg", "region-2": "channel:right"},
           "screenshot": "$WORK/gimp_regions.png", "keys": ["Escape"]},
          {"props": {"style-file": "$SHARED/images/starry_night.jpg"}, "expand_advanced": true,
           "screenshot": "$WORK/gimp_dialog.png", "keys": ["Escape"]}]}
JSON
NST_GIMP_VENV=$VENV OMP_NUM_THREADS=2 bash "$HERE/gimp-env.sh" run python3 "$HERE/gimp_dialog.py" "$WORK/spec.json"
# a palette keeps the PNGs small: 128 colours for the dialog, 256 for the one with a picture in it
for name in gimp_instant gimp_dialog gimp_regions; do
    colours=128; [ "$name" = gimp_instant ] && colours=256
    "$VENV/bin/python" -c "import sys; from PIL import Image; \
Image.open(sys.argv[1]).convert('RGB').quantize(int(sys.argv[3])).save(sys.argv[2], optimize=True)" \
        "$WORK/$name.png" "$OUT/$name.png" "$colours"
    echo "gimp-dialog-picture.sh: wrote $OUT/$name.png" >&2
done
