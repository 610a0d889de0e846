# Shell helpers for tests that need the Vault emulator; source this file (bash).
#
#   . test/vault_emulator/lib.sh
#   pgck_vault_start            # sets PGCK_VAULT_PORT, PGCK_VAULT_PID, PGCK_VAULT_TMP
#   vaultctl POST policy '{"name": ...}'    # the control API (emulator.py's docstring)
#
# The emulator runs with /usr/bin/python3 (python3-cryptography), logs to
# $PGCK_VAULT_TMP/emulator.log, and is stopped (SIGTERM to its own pid,
# nothing else) by pgck_vault_stop, which the caller's EXIT trap calls.

PGCK_VAULT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGCK_PYTHON=${PGCK_PYTHON:-/usr/bin/python3}
PGCK_VAULT_PID=
PGCK_VAULT_TMP=

pgck_vault_stop() {
	if [ -n "$PGCK_VAULT_PID" ]; then
		kill -TERM "$PGCK_VAULT_PID" 2>/dev/null
		wait "$PGCK_VAULT_PID" 2>/dev/null
		PGCK_VAULT_PID=
	fi
	if [ -n "$PGCK_VAULT_TMP" ]; then rm -rf "$PGCK_VAULT_TMP"; PGCK_VAULT_TMP=; fi
}

pgck_vault_start() {
	local i
	PGCK_VAULT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/pgck-vault.XXXXXX")
	"$PGCK_PYTHON" "$PGCK_VAULT_DIR/emulator.py" --port-file "$PGCK_VAULT_TMP/port" \
		--log "$PGCK_VAULT_TMP/emulator.log" --root-token "${PGCK_VAULT_ROOT_TOKEN:-root}" &
	PGCK_VAULT_PID=$!
	for i in $(seq 1 300); do
		if [ -s "$PGCK_VAULT_TMP/port" ]; then
			PGCK_VAULT_PORT=$(cat "$PGCK_VAULT_TMP/port")
			export PGCK_VAULT_PORT
			return 0
		fi
		kill -0 "$PGCK_VAULT_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "the Vault emulator did not start" >&2
	return 1
}

# vaultctl METHOD PATH [JSON]: the emulator's control API (/_emu/PATH)
vaultctl() {
	"$PGCK_PYTHON" - "$PGCK_VAULT_PORT" "$@" <<'PY'
import json, sys, urllib.request
port, method, path = sys.argv[1], sys.argv[2], sys.argv[3]
data = sys.argv[4].encode() if len(sys.argv) > 4 else (b"{}" if method == "POST" else None)
req = urllib.request.Request("http://127.0.0.1:%s/_emu/%s" % (port, path), data=data, method=method,
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).read().decode())
PY
}

# vault_calls WHAT: requests of that kind since reset-stats (datakey, decrypt, renew-self, ...)
vault_calls() {
	vaultctl GET stats | "$PGCK_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["calls"].get(sys.argv[1], 0))' "$1"
}
