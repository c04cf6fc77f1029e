#!/usr/bin/env bash
# e2e-common.sh - shell helpers shared by the end-to-end test scripts, with or
# without guests. Source it (guest-kit.sh sources it too); it only defines
# functions and its own E2E_* variables.
#
# Output and arguments:
#     step TEXT / ok TEXT / bad TEXT
#                     progress lines "[ .. ] TEXT", "[ ok ] TEXT", "[FAIL] TEXT"
#     e2e_usage ARGS  prints "usage: $0 ARGS" on stderr and exits 2
#     e2e_executable PATH
#                     prints PATH made absolute; when it is not an executable
#                     file, says so on stderr and returns 2
#     e2e_missing_tools CMD...
#                     prints the commands that are not on PATH, space-separated
#                     (nothing when all are there)
#     e2e_show_tail TITLE FILE [LINES]
#                     prints the last LINES (default 40) of FILE between
#                     "---- TITLE ... ----" and "---- end ----" (carriage
#                     returns and terminal colour codes removed)
#     e2e_fail TEXT   prints "[FAIL] TEXT", calls the function named by
#                     E2E_FAIL_HOOK (to show logs), prints "RESULT: FAIL" and
#                     exits 1
#
# Temporary directory and cleanup:
#     e2e_begin NAME KEEP_VAR
#                     sets E2E_TMP to a fresh ${TMPDIR:-/tmp}/NAME.XXXXXX and
#                     installs the EXIT/INT/TERM traps: on any exit the function
#                     named by E2E_CLEANUP_HOOK stops the script's own processes,
#                     then E2E_TMP is removed (kept, and its path printed, when
#                     the variable named KEEP_VAR is 1); the exit status is kept
#                     (130 on SIGINT, 143 on SIGTERM)
#
# Processes (only ones the script started, by PID):
#     e2e_alive PID   true while PID runs (a zombie, exited but not yet
#                     reaped, does not count; an empty PID is not alive)
#     e2e_reap PID [GRACE_S]
#                     stops PID for good: SIGTERM and up to GRACE_S seconds to
#                     exit when GRACE_S is given, then SIGKILL, then reaps it;
#                     an empty PID is ignored; never fails
#     e2e_collect VAR reaps the process whose PID is in the variable VAR, sets
#                     E2E_STATUS to its exit status and empties VAR
#     e2e_stop_with_term VAR SECONDS NAME
#                     sends SIGTERM to the PID in VAR and requires that it
#                     exits with status 0 within SECONDS; otherwise e2e_fail
#                     "NAME still running ..." or "NAME exited with status ..."
#     e2e_wait_for_socket SOCK VAR
#                     waits up to 10 s for the daemon whose PID is in VAR to
#                     create the socket SOCK; e2e_fail if it exits first or
#                     the socket does not appear

[[ -n "${E2E_COMMON_LOADED:-}" ]] && return 0
E2E_COMMON_LOADED=1
E2E_TMP=
E2E_KEEP_VAR=
E2E_STATUS=
E2E_CLEANUP_HOOK=${E2E_CLEANUP_HOOK:-}
E2E_FAIL_HOOK=${E2E_FAIL_HOOK:-}

step() { printf '[ .. ] %s\n' "$*"; }
ok() { printf '[ ok ] %s\n' "$*"; }
bad() { printf '[FAIL] %s\n' "$*"; }

e2e_usage() {
    printf 'usage: %s %s\n' "$0" "$*" >&2
    exit 2
}

e2e_executable() {
    local path=$1
    if [[ ! -x "$path" ]]; then
        printf '%s: %s is not an executable file\n' "$0" "$path" >&2
        return 2
    fi
    [[ "$path" == /* ]] || path=$PWD/$path
    printf '%s\n' "$path"
}

e2e_missing_tools() {
    local tool absent=()
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || absent+=("$tool")
    done
    if ((${#absent[@]})); then
        printf '%s\n' "${absent[*]}"
    fi
}

e2e_show_tail() {
    local title=$1 file=$2 lines=${3:-40}
    printf -- '---- %s (%s, last %d lines) ----\n' "$title" "$file" "$lines"
    if [[ -s "$file" ]]; then
        tail -n "$lines" "$file" | tr -d '\r' | sed 's/\x1b\[[0-9;]*[A-Za-z]//g'
    else
        printf '(empty)\n'
    fi
    printf -- '---- end ----\n'
}

e2e_fail() {
    bad "$*"
    if [[ -n "$E2E_FAIL_HOOK" ]]; then
        "$E2E_FAIL_HOOK" || true
    fi
    printf 'RESULT: FAIL\n'
    exit 1
}

e2e_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$E2E_CLEANUP_HOOK" ]]; then
        "$E2E_CLEANUP_HOOK" || true
    fi
    if [[ -n "$E2E_TMP" ]]; then
        if [[ -n "$E2E_KEEP_VAR" && "${!E2E_KEEP_VAR:-0}" == 1 ]]; then
            printf 'kept %s\n' "$E2E_TMP"
        else
            rm -rf "$E2E_TMP"
        fi
    fi
    exit "$rc"
}

e2e_begin() {
    E2E_KEEP_VAR=$2
    E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap e2e_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

e2e_alive() {
    local pid=$1 state
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n "$state" && "$state" != Z ]]
}

e2e_reap() {
    local pid=$1 grace=${2:-0}
    [[ -n "$pid" ]] || return 0
    if ((grace > 0)); then
        kill -TERM "$pid" 2>/dev/null || true
        local end=$((SECONDS + grace))
        while e2e_alive "$pid" && ((SECONDS < end)); do
            sleep 0.1
        done
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

e2e_collect() {
    local -n e2e_pid_ref=$1
    E2E_STATUS=0
    wait "$e2e_pid_ref" || E2E_STATUS=$?
    e2e_pid_ref=
}

e2e_stop_with_term() {
    local -n e2e_pid_ref=$1
    local seconds=$2 name=$3
    kill -TERM "$e2e_pid_ref"
    local deadline=$((SECONDS + seconds))
    while e2e_alive "$e2e_pid_ref" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if e2e_alive "$e2e_pid_ref"; then
        e2e_fail "$name still running ${seconds}s after SIGTERM"
    fi
    e2e_collect "$1"
    ((E2E_STATUS == 0)) || e2e_fail "$name exited with status $E2E_STATUS after SIGTERM (expected 0)"
}

e2e_wait_for_socket() {
    local sock=$1
    local -n e2e_pid_ref=$2
    local deadline=$((SECONDS + 10))
    while [[ ! -S "$sock" ]]; do
        if ! e2e_alive "$e2e_pid_ref"; then
            e2e_collect "$2"
            e2e_fail "daemon exited with status $E2E_STATUS before creating its socket"
        fi
        ((SECONDS < deadline)) || e2e_fail "daemon socket $sock did not appear within 10s"
        sleep 0.1
    done
}
