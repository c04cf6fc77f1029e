#!/bin/sh
# Builds the API reference (HTML and man pages) from the public headers.
# Usage: docs/build.sh OUTDIR
# Writes OUTDIR/html/index.html and OUTDIR/man/man3/*.3. Any Doxygen warning
# fails the build; the warnings are printed and kept in OUTDIR/warnings.log.
# Needs doxygen (Debian: apt-get install doxygen).
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
if ! command -v doxygen >/dev/null 2>&1; then
  echo "docs: doxygen is not installed (apt-get install doxygen)" >&2
  exit 1
fi

srcdir=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
rm -rf "$outdir/html" "$outdir/man" "$outdir/warnings.log"

hdr="$srcdir/include/vhostuser/vhostuser.h"
major=$(sed -n 's/^#define VHU_VERSION_MAJOR \([0-9]*\)$/\1/p' "$hdr")
minor=$(sed -n 's/^#define VHU_VERSION_MINOR \([0-9]*\)$/\1/p' "$hdr")
patch=$(sed -n 's/^#define VHU_VERSION_PATCH \([0-9]*\)$/\1/p' "$hdr")

status=0
VHU_SRCDIR="$srcdir" VHU_OUTDIR="$outdir" VHU_VERSION="$major.$minor.$patch" \
  doxygen "$srcdir/docs/Doxyfile" || status=$?

if [ -s "$outdir/warnings.log" ]; then
  echo "docs: Doxygen warnings (each one fails the build):" >&2
  cat "$outdir/warnings.log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "docs: FAILED" >&2
  exit 1
fi
if [ ! -f "$outdir/html/index.html" ]; then
  echo "docs: no html/index.html was generated" >&2
  exit 1
fi

# MAN_LINKS makes a page per documented name; struct members ("chains",
# "errors", ...) would get pages under generic names, so only links named
# after the API (vhu_*, VHU_*) are kept.
for f in "$outdir"/man/man3/*.3; do
  case $(basename "$f") in
    vhu_* | VHU_* | vhostuser.h.3 | export.h.3) ;;
    *) if head -n 1 "$f" | grep -q '^\.so '; then rm -f "$f"; fi ;;
  esac
done

pages=$(find "$outdir/man/man3" -name '*.3' | wc -l)
echo "docs: API reference in $outdir/html/index.html, $pages man pages in $outdir/man/man3, no warnings"
