#!/usr/bin/env bash
# The ORE terms against an independent implementation (issue 14 item 6):
# test/ore_reference.py, written from the CLWW 2016 paper and FORMAT.md
# section 10, recomputes every fixed vector test/unit/ore_vectors.h holds
# (which test/unit/test_ore.c checks the C against: same key, same inputs,
# identical term bytes) and compares every same-domain pair of those terms
# with its own comparison against the plaintext order.
set -u
ROOT=${PGCK_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
exec /usr/bin/python3 "$ROOT/test/ore_reference.py" --check "$ROOT/test/unit/ore_vectors.h"
