#!/usr/bin/env bash
# Installs the system parts kiln's runtime and tests use, when they are missing (Debian 12, as root):
#   runc, crun          OCI runtimes that run each RUN step (crun is tried first, runc is the fallback)
#   passt               pasta: the user-mode network of RUN steps with the default network (src/runtime/network.ts)
#   busybox-static      the embedded base image for demos and tests (no registry needed)
#   skopeo, umoci       independent OCI tools the tests check kiln's images with
#   docker-registry     a real registry the registry tests start on 127.0.0.1
#   buildah             the peer engine of the differential test (same Dockerfiles, compared images)
#   attr                getfattr/setfattr: xattrs and overlay opaque markers, when the native addon is not built
#   gcc, libc6-dev      to compile that addon (native/kiln_sys.c: mount and xattr syscalls; Node has neither)
#   libdeflate-dev      headers of libdeflate, for the gzip addon (native/kiln_deflate.c; node:zlib without it)
#   libssl-dev          headers of libcrypto, for the SHA-256 addon (native/kiln_sha256.c; node:crypto without it)
#   zstd, xz-utils, bzip2  layer compression and ADD's archive formats
#   jq, apache2-utils   htpasswd for the registry auth tests
#   openssh-client      ssh-agent, ssh-add and ssh-keygen for the RUN --mount=type=ssh tests (a real agent)
#   mmdebstrap          the Debian 12 base of the real-world differential builds (scripts/debian-base.sh)
set -euo pipefail
pkgs=(runc crun passt busybox-static skopeo umoci docker-registry buildah attr gcc libc6-dev libdeflate-dev libssl-dev zstd xz-utils bzip2 jq apache2-utils openssh-client mmdebstrap)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: system packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap: missing ${missing[*]}; run as root (or: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "bootstrap: done"
