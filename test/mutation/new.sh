#!/usr/bin/env bash
# test/mutation/new.sh: write a mutant into the catalogue from Perl
# substitutions on the current source (each must change its file).
#
#   bash test/mutation/new.sh -n NAME -m MODULE -d "what it breaks" \
#       [-t TAGS] [-o ONLY_REGEX] [-r "REGRESS TESTS"] [-s SLOW_REGEX] [-e "equivalent because"] \
#       FILE 'perl -0777 expression' [FILE 'expression' ...]
#
# -o/-r name the fastest selection of the suite that kills the mutant (as
# PGCK_ONLY/PGCK_REGRESS); test/mutation/run.sh runs that first and checks it.
# -s names slower steps to try, instead of the full suite, when the fast
# layers let the mutant survive.  Writes test/mutation/mutants/NAME.diff.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
name= module= desc= tags= only= regress= slow= equiv=
while getopts n:m:d:t:o:r:s:e: opt; do
    case $opt in
        n) name=$OPTARG ;; m) module=$OPTARG ;; d) desc=$OPTARG ;; t) tags=$OPTARG ;;
        o) only=$OPTARG ;; r) regress=$OPTARG ;; s) slow=$OPTARG ;; e) equiv=$OPTARG ;;
        *) sed -n '2,12p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ -n "$name" ] && [ -n "$module" ] && [ -n "$desc" ] && [ $# -ge 2 ] && [ $(($# % 2)) -eq 0 ] ||
    { sed -n '2,12p' "$0"; exit 2; }
out="$root/test/mutation/mutants/$name.diff"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
    echo "Mutant: $name"
    echo "Module: $module"
    echo "Tags: ${tags:-}"
    echo "Description: $desc"
    echo "Only: ${only:-^(units|regress|isolation)\$}"
    [ -n "$regress" ] && echo "Regress: $regress"
    [ -n "$slow" ] && echo "Slow: $slow"
    [ -n "$equiv" ] && echo "Equivalent: $equiv"
    echo
} >"$tmp/header"
: >"$tmp/body"
while [ $# -gt 0 ]; do
    f=$1 expr=$2
    shift 2
    mkdir -p "$tmp/b/$(dirname "$f")"
    [ -f "$tmp/b/$f" ] || cp "$root/$f" "$tmp/b/$f"
    before=$(md5sum <"$tmp/b/$f")
    perl -0777 -i -pe "$expr" "$tmp/b/$f"
    [ "$(md5sum <"$tmp/b/$f")" != "$before" ] || { echo "$name: '$expr' changed nothing in $f" >&2; exit 1; }
done
for f in $(cd "$tmp/b" && find . -type f | sed 's|^\./||' | sort); do
    diff -u --label "a/$f" --label "b/$f" "$root/$f" "$tmp/b/$f" >>"$tmp/body" || true
done
cat "$tmp/header" "$tmp/body" >"$out"
echo "wrote $out ($(grep -c '^[-+][^-+]' "$tmp/body") changed lines)"
