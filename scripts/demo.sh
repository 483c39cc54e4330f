#!/usr/bin/env bash
# The README's first command: from a fresh clone to a built and running example image.
#  1. installs the system packages kiln needs when missing (scripts/bootstrap.sh; needs root)
#  2. installs npm dependencies from the lockfile when node_modules is missing, and builds the native
#     addon if it is not built yet (kiln works without it, slower)
#  3. builds examples/hello (the busybox base is created in the store from busybox-static on first use)
#  4. runs the image's default command in a container
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
node scripts/ensure-deps.mjs
node scripts/build-native.mjs
npm run grammar --silent
node --import tsx src/cli/main.ts build -t kiln-hello:latest examples/hello
node --import tsx src/cli/main.ts run kiln-hello:latest
