#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs jest. The suites start what
# they need themselves (a private Redis on 127.0.0.1:6399, the 3-node etcd lab) and stop
# it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec npx jest --runInBand "$@"
