#!/bin/bash
# A Debian 12 base image for the real-world differential builds, made with mmdebstrap from the Debian
# archive and cached outside the repository (the archive is only fetched when the tar is missing):
#
#   scripts/debian-base.sh            print the path of the rootfs tar, building it first when needed
#
# The tar is `mmdebstrap --variant=minbase bookworm` with an empty /dev (as Docker's official images
# ship it: no device nodes, the runtime mounts /dev). $KILN_TEST_CACHE moves the cache
# (default ~/.cache/kiln-test).
set -euo pipefail
CACHE=${KILN_TEST_CACHE:-$HOME/.cache/kiln-test}
OUT="$CACHE/debian-bookworm.tar"
if [ ! -s "$OUT" ]; then
  command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >&2
  mkdir -p "$CACHE"
  # A fixed SOURCE_DATE_EPOCH: the same package set gives the same tar.
  SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000} mmdebstrap --quiet --variant=minbase --format=tar --skip=output/dev \
    bookworm "$OUT.tmp" http://deb.debian.org/debian >&2
  mv "$OUT.tmp" "$OUT"
fi
# --skip=output/dev leaves /dev out altogether; the image keeps the empty directory, owned by root, 0755.
if ! tar -tf "$OUT" ./dev/ >/dev/null 2>&1; then
  empty=$(mktemp -d); mkdir -m 0755 "$empty/dev"
  tar --append -f "$OUT" -C "$empty" --owner=0 --group=0 --numeric-owner --mtime=@"${SOURCE_DATE_EPOCH:-1700000000}" ./dev
  rm -rf "$empty"
fi
echo "$OUT"
