#!/usr/bin/env bash
# scripts/demo.sh - install what is missing, build libaev, and run the spec's
# examples on the default policy (selector: epoll, else poll, else select).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/deps.sh
aev_install_packages "${AEV_BUILD_PACKAGES[@]}"

[[ -f build/build.ninja ]] || meson setup build >/dev/null
ninja -C build >/dev/null

# Run from the build tree: its plugins are in build/plugins.
export AEV_PLUGIN_PATH="$PWD/build/plugins"
echo "== aev-inspect --try (the default policy and the plugins it loads)"
build/tools/aev-inspect --policy --try
echo "== hello_world";  build/examples/hello_world
echo "== display_date"; build/examples/display_date --seconds 3
echo "== watch_fd";     build/examples/watch_fd
echo "== display_date_task (the same with a task and aev_sleep)"; build/examples/display_date_task --seconds 3
echo "== signals (this script sends SIGTERM once its handlers are set)"
coproc SIG { exec build/examples/signals; }
sig_pid=$SIG_PID
while read -r line <&"${SIG[0]}"; do
  echo "$line"
  [[ $line == pid* ]] && kill -TERM "$sig_pid"
done
wait "$sig_pid"
