# Shell helpers for tests that need the KMS emulator; source this file (bash).
#
#   . test/kms_emulator/lib.sh
#   pgck_emulator_ensure      # PGCK_EMULATOR_PORT set: use it; unset: start a private emulator
#   ... "$PGCK_EMULATOR_PORT" ...
#
# A private emulator logs to $PGCK_EMULATOR_TMP/emulator.log and is stopped (SIGTERM to its own
# pid, nothing else) by the EXIT trap this sets, which also removes $PGCK_EMULATOR_TMP. A
# caller with its own cleanup defines pgck_on_exit; the trap calls it first.

PGCK_EMULATOR_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGCK_PYTHON=${PGCK_PYTHON:-/usr/bin/python3}
PGCK_EMULATOR_PID=
PGCK_EMULATOR_TMP=

pgck_emulator_stop() {
	if [ -n "$PGCK_EMULATOR_PID" ]; then
		kill -TERM "$PGCK_EMULATOR_PID" 2>/dev/null
		wait "$PGCK_EMULATOR_PID" 2>/dev/null
		PGCK_EMULATOR_PID=
	fi
}

pgck_emulator_cleanup() {
	if declare -F pgck_on_exit >/dev/null; then pgck_on_exit; fi
	pgck_emulator_stop
	if [ -n "$PGCK_EMULATOR_TMP" ]; then rm -rf "$PGCK_EMULATOR_TMP"; fi
}

# Start an emulator with extra emulator.py arguments; sets PGCK_EMULATOR_PORT and _PID.
pgck_emulator_start() {
	local port_file="$PGCK_EMULATOR_TMP/port" i
	"$PGCK_PYTHON" "$PGCK_EMULATOR_DIR/emulator.py" --port-file "$port_file" \
		--log "$PGCK_EMULATOR_TMP/emulator.log" "$@" &
	PGCK_EMULATOR_PID=$!
	for i in $(seq 1 300); do
		if [ -s "$port_file" ]; then
			PGCK_EMULATOR_PORT=$(cat "$port_file")
			export PGCK_EMULATOR_PORT
			return 0
		fi
		kill -0 "$PGCK_EMULATOR_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "the KMS emulator did not start" >&2
	return 1
}

pgck_emulator_ensure() {
	PGCK_EMULATOR_TMP=$(mktemp -d "${TMPDIR:-/tmp}/pgck-emulator.XXXXXX")
	trap pgck_emulator_cleanup EXIT
	if [ -n "${PGCK_EMULATOR_PORT:-}" ]; then
		echo "# using the KMS emulator on port $PGCK_EMULATOR_PORT"
		return 0
	fi
	pgck_emulator_start || return 1
	echo "# started a private KMS emulator on port $PGCK_EMULATOR_PORT (pid $PGCK_EMULATOR_PID)"
}
