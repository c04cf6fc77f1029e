#!/bin/sh
# ABI gate: compares the dynamic symbols a built libvhostuser-cxx.so exports
# with the committed list abi/vhostuser.symbols (and the accepted breaks in
# abi/changes.txt), and with the functions the public header declares.
#
# Usage: abi/check.sh LIBRARY_SO     check (exit 0 pass, 1 fail, 2 usage)
#        abi/check.sh --dump LIBRARY_SO
#                                    print the library's entries in list format
# Needs nm (binutils). See abi/README.md for the workflow.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
list="$here/vhostuser.symbols"
changes="$here/changes.txt"
header="$here/../include/vhostuser/vhostuser.h"

usage() {
  echo "usage: $0 [--dump] LIBRARY_SO" >&2
  exit 2
}

dump=0
if [ $# -eq 2 ] && [ "$1" = "--dump" ]; then
  dump=1
  shift
fi
[ $# -eq 1 ] || usage
lib=$1
if [ ! -f "$lib" ]; then
  echo "abi: no such file: $lib" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# "NAME@@VERSION TYPE" for every defined dynamic symbol; a version node
# definition (type A) is listed as "NODE A". Unversioned symbols keep their
# bare name, which no listed entry matches.
if ! nm -D --defined-only "$lib" >"$tmp/nm"; then
  echo "abi: nm failed on $lib" >&2
  exit 1
fi
awk 'NF >= 3 { print $3, $2 } NF == 2 { print $2, $1 }' "$tmp/nm" | LC_ALL=C sort -u >"$tmp/actual"

if [ "$dump" -eq 1 ]; then
  cat "$tmp/actual"
  exit 0
fi

fail=0
problem() {
  echo "abi: $*"
  fail=1
}

# ---- the committed list ---------------------------------------------------
# Entries are "NAME@@VERSION TYPE" or "NODE A". Lines after the line
# "## additions" must end with "# reason".
awk -v list="$list" '
  /^[[:space:]]*$/ { next }
  /^## additions[[:space:]]*$/ { additions = 1; next }
  /^#/ { next }
  {
    entry = $0; reason = ""
    i = index(entry, "#")
    if (i > 0) { reason = substr(entry, i + 1); entry = substr(entry, 1, i - 1) }
    gsub(/^[[:space:]]+|[[:space:]]+$/, "", entry)
    gsub(/^[[:space:]]+|[[:space:]]+$/, "", reason)
    if (split(entry, f, /[[:space:]]+/) != 2) {
      printf "BAD %s:%d: not \"NAME@@VERSION TYPE\": %s\n", list, NR, $0; next
    }
    if (additions && reason == "") {
      printf "BAD %s:%d: an addition needs a one-line reason (\"# ...\"): %s\n", list, NR, entry
      next
    }
    print "OK " f[1] " " f[2]
  }' "$list" >"$tmp/parsed"
grep '^BAD ' "$tmp/parsed" | sed 's/^BAD /abi: /' || true
grep -q '^BAD ' "$tmp/parsed" && fail=1
sed -n 's/^OK //p' "$tmp/parsed" | LC_ALL=C sort >"$tmp/listed.all"
LC_ALL=C sort -u "$tmp/listed.all" >"$tmp/listed"
if [ "$(wc -l <"$tmp/listed.all")" -ne "$(wc -l <"$tmp/listed")" ]; then
  problem "$list lists an entry twice: $(uniq -d "$tmp/listed.all" | tr '\n' ' ')"
fi

# ---- accepted breaks --------------------------------------------------------
#   removed NAME@@VERSION TYPE : reason
#   changed NAME@@VERSION TYPE -> NAME@@VERSION TYPE : reason
: >"$tmp/removed"
: >"$tmp/changed_old"
: >"$tmp/changed_new"
if [ -f "$changes" ]; then
  awk -v file="$changes" -v dir="$tmp" '
    /^[[:space:]]*(#|$)/ { next }
    {
      i = index($0, ":")
      reason = i ? substr($0, i + 1) : ""
      head = i ? substr($0, 1, i - 1) : $0
      gsub(/^[[:space:]]+|[[:space:]]+$/, "", reason)
      gsub(/^[[:space:]]+|[[:space:]]+$/, "", head)
      n = split(head, f, /[[:space:]]+/)
      if (reason == "") { printf "abi: %s:%d: no reason given: %s\n", file, NR, $0; bad = 1; next }
      if (f[1] == "removed" && n == 3) {
        print f[2], f[3] > (dir "/removed")
      } else if (f[1] == "changed" && n == 6 && f[4] == "->") {
        print f[2], f[3] > (dir "/changed_old")
        print f[5], f[6] > (dir "/changed_new")
      } else {
        printf "abi: %s:%d: not \"removed ENTRY : reason\" or \"changed ENTRY -> ENTRY : reason\": %s\n", file, NR, $0
        bad = 1
      }
    }
    END { exit bad }' "$changes" || fail=1
fi
for f in removed changed_old changed_new; do
  LC_ALL=C sort -u -o "$tmp/$f" "$tmp/$f"
done

# Entries the list promises that the library does not export as listed.
LC_ALL=C comm -23 "$tmp/listed" "$tmp/actual" >"$tmp/missing"
while read -r name type; do
  sym=${name%%@*}
  if grep -qxF "$name $type" "$tmp/removed"; then
    echo "abi: accepted removal (changes.txt): $name $type"
  elif grep -qxF "$name $type" "$tmp/changed_old"; then
    echo "abi: accepted change (changes.txt): $name $type"
  elif now=$(awk -v s="$sym" '{ n = $1; sub(/@.*/, "", n) } n == s { print; exit }' "$tmp/actual") &&
    [ -n "$now" ]; then
    problem "CHANGED: $name $type is now exported as $now (record it in abi/changes.txt with a reason, or restore it)"
  else
    problem "REMOVED: $name $type is no longer exported (record it in abi/changes.txt with a reason, or restore it)"
  fi
done <"$tmp/missing"

# Exported entries the list does not have: new symbols, or the new side of a
# recorded change.
LC_ALL=C comm -13 "$tmp/listed" "$tmp/actual" >"$tmp/added"
while read -r name type; do
  if grep -qxF "$name $type" "$tmp/changed_new"; then
    continue
  fi
  problem "ADDED: $name $type is exported but not in abi/vhostuser.symbols (add \"$name $type  # reason\" under \"## additions\")"
done <"$tmp/added"

# Records that no longer describe the library.
while read -r name type; do
  if grep -qxF "$name $type" "$tmp/actual"; then
    problem "changes.txt records the removal of $name $type, but the library exports it"
  fi
done <"$tmp/removed"
while read -r name type; do
  if ! grep -qxF "$name $type" "$tmp/actual"; then
    problem "changes.txt records a change to $name $type, but the library does not export that"
  fi
done <"$tmp/changed_new"

# Everything exported is versioned and named vhu_*.
while read -r name type; do
  case "$name $type" in
    vhu_*@@VHOSTUSER_* | VHOSTUSER_*" A") ;;
    *) problem "exported outside the vhu_* API or without a version node: $name $type" ;;
  esac
done <"$tmp/actual"

# ---- the header and the library agree ---------------------------------------
if [ -f "$header" ]; then
  # Declarations start with "VHU_EXPORT <type> <name>(" on one line.
  sed -n 's/^VHU_EXPORT[^(]*[ *]\(vhu_[a-z0-9_]*\)(.*/\1/p' "$header" | LC_ALL=C sort -u >"$tmp/declared"
  sed -n 's/^\(vhu_[a-z0-9_]*\)@.* [TtiWw]$/\1/p' "$tmp/actual" | LC_ALL=C sort -u >"$tmp/funcs"
  for s in $(LC_ALL=C comm -23 "$tmp/declared" "$tmp/funcs"); do
    problem "declared in vhostuser.h but not exported: $s"
  done
  for s in $(LC_ALL=C comm -13 "$tmp/declared" "$tmp/funcs"); do
    problem "exported but not declared in vhostuser.h: $s"
  done
  declared=$(wc -l <"$tmp/declared")
else
  problem "no header at $header"
  declared=0
fi

total=$(wc -l <"$tmp/actual")
listed=$(wc -l <"$tmp/listed")
if [ "$fail" -ne 0 ]; then
  echo "abi: FAILED ($total exported entries, $listed listed; see abi/README.md)"
  exit 1
fi
echo "abi: $total exported entries match abi/vhostuser.symbols ($listed listed, $declared header functions)"
