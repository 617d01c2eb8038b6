#!/usr/bin/env bash
# scripts/test.sh - install what is missing, then run the whole test suite:
#   1. a normal build (-Werror) and every test (conformance on every plugin set,
#      registry/policy, examples);
#   2. the same under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. the same under ThreadSanitizer (threads meet the loop in call_soon_threadsafe);
#   4. the same under valgrind memcheck;
#   5. a build with the plugins linked into the core (-Dpreload_plugins=true),
#      run with an empty plugin path, so the built-in table serves every loop;
#   6. the task tests on the portable task switch (-Dfiber=ucontext), the one
#      systems without a hand-written switch use.
# Build directories: build-test, build-asan, build-tsan, build-preload, build-ucontext
# (reused when present).
# Exits non-zero if any step fails. Set AEV_TEST_QUICK=1 to run step 1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/deps.sh
aev_install_packages "${AEV_BUILD_PACKAGES[@]}" "${AEV_TEST_PACKAGES[@]}"

jobs=$(nproc)
step() { echo; echo "=== $*"; }

setup() { # dir, meson options...
    local dir=$1; shift
    if [[ ! -f $dir/build.ninja ]]; then
        meson setup "$dir" "$@" >/dev/null
    fi
    ninja -C "$dir" >/dev/null
}

step "normal build: all tests"
setup build-test
meson test -C build-test --num-processes "$jobs" --print-errorlogs

[[ ${AEV_TEST_QUICK:-0} == 1 ]] && exit 0

step "AddressSanitizer + UndefinedBehaviorSanitizer (clang)"
CC=clang setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --num-processes "$jobs" --print-errorlogs

step "ThreadSanitizer (clang)"
CC=clang setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dbench=false
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    meson test -C build-tsan --num-processes "$jobs" --print-errorlogs

step "valgrind memcheck"
meson test -C build-test --setup valgrind --num-processes "$jobs" --print-errorlogs

step "preloaded plugins (no plugin directory at all)"
setup build-preload -Dpreload_plugins=true -Dbench=false -Dtests=disabled
empty=$(mktemp -d)
for poll in epoll poll select; do
    AEV_PLUGIN_PATH=$empty AEV_CONFIG_DIR=$empty XDG_CONFIG_HOME=$empty AEV_POLL=$poll \
        build-preload/tools/aev-inspect --plugins --try | tee "$empty/inspect.txt"
    grep -q "^loop[[:space:]]*poll=$poll" "$empty/inspect.txt"
    grep -q "(built in) aev_poll_$poll" "$empty/inspect.txt"
    for ex in hello_world watch_fd; do
        AEV_PLUGIN_PATH=$empty AEV_CONFIG_DIR=$empty XDG_CONFIG_HOME=$empty AEV_POLL=$poll build-preload/examples/$ex
    done
done
rm -rf "$empty"

step "portable task switch (-Dfiber=ucontext): the task tests"
setup build-ucontext -Dfiber=ucontext -Dbench=false
ucontext_tests=()
for set in selector-epoll selector-poll selector-select; do
    ucontext_tests+=("task@$set" "task_sock@$set" "future_helpers@$set")
done
meson test -C build-ucontext --num-processes "$jobs" --print-errorlogs "${ucontext_tests[@]}"

# One closing line over every meson test run above (each test once per step).
summary=$(python3 - build-test/meson-logs/testlog.json build-test/meson-logs/testlog-valgrind.json \
    build-asan/meson-logs/testlog.json build-tsan/meson-logs/testlog.json \
    build-ucontext/meson-logs/testlog.json <<'PY'
import json, sys
ok = bad = skip = 0
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            ok += 1
        elif r == "SKIP":
            skip += 1
        else:
            bad += 1
print(f"{ok} passed, {bad} failed, {skip} skipped")
PY
)
echo
echo "all test steps passed"
echo "tests: $summary"
