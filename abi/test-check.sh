#!/bin/sh
# Tests abi/check.sh itself: builds small shared libraries that export the
# committed list, or the list with a symbol removed, added, re-versioned or
# unversioned, and checks that the gate passes or fails as abi/README.md
# says. Needs cc and nm. Exit 0 pass, 1 fail.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# A private copy of the tree layout check.sh expects: abi/ next to include/.
mkdir -p "$tmp/tree/abi" "$tmp/tree/include/vhostuser"
cp "$here/check.sh" "$here/vhostuser.symbols" "$here/changes.txt" "$tmp/tree/abi/"
cp "$here/../include/vhostuser/vhostuser.h" "$here/../include/vhostuser/export.h" \
  "$tmp/tree/include/vhostuser/"
gate="$tmp/tree/abi/check.sh"

# The functions of the committed list (same version node for all of them).
sed -n 's/^\(vhu_[a-z0-9_]*\)@@VHOSTUSER_0 T.*/\1/p' "$here/vhostuser.symbols" >"$tmp/names"
[ -s "$tmp/names" ] || { echo "abi-test: no functions in the list"; exit 1; }

# mklib OUT NODE NAMES_FILE [EXTRA_NAME]: a library exporting each name
# (and EXTRA_NAME) under version node NODE.
mklib() {
  : >"$tmp/lib.c"
  cp "$3" "$tmp/lib.names"
  if [ $# -ge 4 ]; then echo "$4" >>"$tmp/lib.names"; fi
  while read -r n; do echo "void $n(void) {}" >>"$tmp/lib.c"; done <"$tmp/lib.names"
  {
    echo "$2 {"
    echo "  global:"
    sed 's/.*/    &;/' "$tmp/lib.names"
    echo "  local: *;"
    echo "};"
  } >"$tmp/lib.map"
  cc -shared -fPIC -o "$1" "$tmp/lib.c" -Wl,--version-script="$tmp/lib.map"
}

pass=0
failed=0
# expect 0|1 DESCRIPTION LIB [GREP]
expect() {
  want=$1 what=$2 lib=$3
  rc=0
  "$gate" "$lib" >"$tmp/out" 2>&1 || rc=$?
  ok=1
  if [ "$want" -eq 0 ] && [ "$rc" -ne 0 ]; then ok=0; fi
  if [ "$want" -ne 0 ] && [ "$rc" -ne 1 ]; then ok=0; fi
  if [ $# -ge 4 ] && ! grep -q "$4" "$tmp/out"; then ok=0; fi
  if [ "$ok" -eq 1 ]; then
    pass=$((pass + 1))
    echo "ok: $what"
  else
    failed=$((failed + 1))
    echo "FAIL: $what (exit $rc)"
    head -n 8 "$tmp/out" | sed 's/^/  | /'
  fi
}

restore() {
  cp "$here/vhostuser.symbols" "$here/changes.txt" "$tmp/tree/abi/"
}

# 1. The list itself passes.
mklib "$tmp/same.so" VHOSTUSER_0 "$tmp/names"
expect 0 "a library exporting exactly the list passes" "$tmp/same.so" "match"

# 2. A removed symbol fails, and passes once changes.txt records it (the
#    header no longer declares it either).
grep -vx vhu_vring_pending "$tmp/names" >"$tmp/names.rm"
mklib "$tmp/removed.so" VHOSTUSER_0 "$tmp/names.rm"
sed -i '/vhu_vring_pending(/d' "$tmp/tree/include/vhostuser/vhostuser.h"
expect 1 "a removed symbol fails" "$tmp/removed.so" "REMOVED: vhu_vring_pending@@VHOSTUSER_0 T"
echo "removed vhu_vring_pending@@VHOSTUSER_0 T" >>"$tmp/tree/abi/changes.txt"
expect 1 "a removal recorded without a reason fails" "$tmp/removed.so" "no reason"
restore
echo "removed vhu_vring_pending@@VHOSTUSER_0 T : replaced by a counter" >>"$tmp/tree/abi/changes.txt"
expect 0 "a removal recorded with a reason passes" "$tmp/removed.so" "accepted removal"
expect 1 "a recorded removal of a symbol still exported fails" "$tmp/same.so" "records the removal"
restore
cp "$here/../include/vhostuser/vhostuser.h" "$tmp/tree/include/vhostuser/"

# 3. A changed version node fails, and passes once recorded.
mklib "$tmp/renode.so" VHOSTUSER_1 "$tmp/names"
expect 1 "a symbol moved to another version node fails" "$tmp/renode.so" \
  "CHANGED: vhu_chain_head@@VHOSTUSER_0 T is now exported as vhu_chain_head@@VHOSTUSER_1 T"
{
  echo "changed VHOSTUSER_0 A -> VHOSTUSER_1 A : new node for the 1.x series"
  while read -r n; do
    echo "changed $n@@VHOSTUSER_0 T -> $n@@VHOSTUSER_1 T : new node for the 1.x series"
  done <"$tmp/names"
} >>"$tmp/tree/abi/changes.txt"
expect 0 "recorded changes pass" "$tmp/renode.so" "accepted change"
restore

# 4. An added symbol fails until the list has it with a reason.
cp "$tmp/names" "$tmp/names.add"
echo vhu_vring_fresh >>"$tmp/names.add"
mklib "$tmp/added.so" VHOSTUSER_0 "$tmp/names.add"
sed -i 's/^VHU_EXPORT int vhu_vring_pending(vhu_vring\* vring);/&\nVHU_EXPORT int vhu_vring_fresh(vhu_vring* vring);/' \
  "$tmp/tree/include/vhostuser/vhostuser.h"
expect 1 "an added symbol fails" "$tmp/added.so" "ADDED: vhu_vring_fresh@@VHOSTUSER_0 T"
echo "vhu_vring_fresh@@VHOSTUSER_0 T" >>"$tmp/tree/abi/vhostuser.symbols"
expect 1 "an addition without a reason fails" "$tmp/added.so" "needs a one-line reason"
restore
echo "vhu_vring_fresh@@VHOSTUSER_0 T  # 0.2: a test addition" >>"$tmp/tree/abi/vhostuser.symbols"
expect 0 "an addition with a reason passes" "$tmp/added.so" "match"
restore
cp "$here/../include/vhostuser/vhostuser.h" "$tmp/tree/include/vhostuser/"
expect 1 "an exported function the header does not declare fails" "$tmp/added.so" \
  "exported but not declared in vhostuser.h: vhu_vring_fresh"

# 5. A symbol outside the API fails.
mklib "$tmp/leak.so" VHOSTUSER_0 "$tmp/names" helper_leak
expect 1 "a non-vhu_ export fails" "$tmp/leak.so" "outside the vhu_\* API"

# 6. Usage errors.
rc=0
"$gate" >/dev/null 2>&1 || rc=$?
if [ "$rc" -eq 2 ]; then pass=$((pass + 1)); echo "ok: no argument is a usage error"; else
  failed=$((failed + 1)); echo "FAIL: no argument gave exit $rc"; fi
expect 1 "a missing library fails" "$tmp/nonexistent.so" "no such file"

if [ "$failed" -ne 0 ]; then
  echo "abi-test: $failed of $((pass + failed)) tests FAILED"
  exit 1
fi
echo "abi-test: $pass tests passed"
