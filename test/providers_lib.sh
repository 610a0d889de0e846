# test/providers_lib.sh: starting the counterparts of the key providers, shared by
# test/checks/vault_transit.sh, kmip_pykmip.sh, pkcs11_softhsm.sh and provider_matrix.sh
# (source it; bash, as root, after test/run.sh exported PGBIN/PGHOST/PGPORT/PGCK_TMP).
#
#   Vault Transit: pgck_prov_vault_start (the emulator of test/vault_emulator, stopped by
#       pgck_vault_stop), pgck_prov_vault_root METHOD PATH [JSON] [NAMESPACE] (the Vault API
#       with the root token), pgck_prov_secret_file DIR NAME VALUE [MODE];
#   KMIP: pgck_prov_kmip_cert, pgck_prov_kmip_start DIR PORT (a throwaway CA, server and
#       client certificates and PyKMIP's server, run as postgres in its own process group),
#       pgck_prov_kmip_stop DIR, pgck_prov_kmipc DIR PORT CMD ARGS (PyKMIP's client);
#   PKCS#11: pgck_prov_softhsm_setup DIR PIN SOPIN (the test module and helper built, a
#       SoftHSM2 token "pg"), pgck_prov_softhsm_genkey DIR PIN LABEL [extractable],
#       pgck_prov_as_hsm DIR CMD... (a command as postgres with SOFTHSM2_CONF);
#   pgck_prov_start_cluster DIR CONF [VAR=VALUE...]: a second cluster in DIR/data whose
#       server runs with those environment variables (SoftHSM2 reads SOFTHSM2_CONF from its
#       environment), port in PGCK_PROV_PGPORT, socket in DIR, log DIR/server.log;
#       pgck_prov_stop_cluster DIR.
# Every process started here is stopped by pid or process group, never by name.

PGCK_PROV_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGCK_PROV_PY=/usr/bin/python3

pgck_prov_free_port() {
    $PGCK_PROV_PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ------------------------------------------------------------------ Vault Transit
# pgck_prov_vault_start: the Vault emulator on a free port (PGCK_VAULT_PORT, PGCK_VAULT_PID),
# its URL in PGCK_PROV_VAULT_URL; the caller's EXIT trap calls pgck_vault_stop
pgck_prov_vault_start() {
    . "$PGCK_PROV_LIB_DIR/vault_emulator/lib.sh"
    pgck_vault_start || return 1
    PGCK_PROV_VAULT_URL="http://127.0.0.1:$PGCK_VAULT_PORT"
}

# pgck_prov_vault_root METHOD PATH [JSON] [NAMESPACE]: the Vault API with the root token
pgck_prov_vault_root() {
    curl -sS -X "$1" -H "X-Vault-Token: root" ${4:+-H "X-Vault-Namespace: $4"} \
        ${3:+-H "Content-Type: application/json" -d "$3"} "$PGCK_PROV_VAULT_URL/v1/$2"
}

# pgck_prov_secret_file DIR NAME VALUE [MODE]: DIR/NAME owned by postgres, mode 0600 by
# default; prints its path
pgck_prov_secret_file() {
    printf '%s\n' "$3" >"$1/$2"
    chown postgres "$1/$2"
    chmod "${4:-600}" "$1/$2"
    echo "$1/$2"
}

# ------------------------------------------------------------------ KMIP (PyKMIP)
PGCK_PROV_KMIP_HELPER="$PGCK_PROV_LIB_DIR/checks/kmip_pykmip.py"

# pgck_prov_kmip_cert DIR NAME CA SUBJECT EXTFILE: key and certificate NAME signed by CA
pgck_prov_kmip_cert() {
    openssl req -newkey rsa:2048 -nodes -keyout "$1/$2.key" -out "$1/$2.csr" -subj "$4" 2>/dev/null &&
        openssl x509 -req -in "$1/$2.csr" -CA "$1/$3.crt" -CAkey "$1/$3.key" -CAcreateserial \
            -out "$1/$2.crt" -days 2 -extfile "$5" 2>/dev/null
}

# pgck_prov_kmip_pki DIR: a throwaway CA (ca), the server's certificate (server, for
# 127.0.0.1 and kmip.test) and the database's client certificate (client, CN=pgcrypt_kms)
pgck_prov_kmip_pki() {
    mkdir -p "$1" || return 1
    printf 'subjectAltName = IP:127.0.0.1, DNS:kmip.test\nextendedKeyUsage = serverAuth\n' >"$1/server.ext"
    printf 'extendedKeyUsage = clientAuth\n' >"$1/client.ext"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1/ca.key" -out "$1/ca.crt" -days 2 \
        -subj "/CN=pgck KMIP test CA" 2>/dev/null &&
        pgck_prov_kmip_cert "$1" server ca "/CN=kmip.test" "$1/server.ext" &&
        pgck_prov_kmip_cert "$1" client ca "/CN=pgcrypt_kms" "$1/client.ext"
}

# pgck_prov_kmip_start DIR PORT: PyKMIP's server on 127.0.0.1:PORT, as postgres, in its
# own process group (pid in DIR/pid), with DIR/start.sh and DIR/restart.sh (which a
# psql \! can run); after pgck_prov_kmip_pki.  Makes DIR and its keys postgres's, 0600.
pgck_prov_kmip_start() {
    local d=$1 port=$2
    cat >"$d/start.sh" <<SH
#!/bin/sh
# start PyKMIP's server in the background and wait until it accepts connections
cd "$d" && setsid $PGCK_PROV_PY "$PGCK_PROV_KMIP_HELPER" serve "$d" $port >>"$d/serve.out" 2>&1 &
echo \$! >"$d/pid"
for i in \$(seq 1 100); do
    $PGCK_PROV_PY -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' $port 2>/dev/null && exit 0
    sleep 0.1
done
exit 1
SH
    cat >"$d/restart.sh" <<SH
#!/bin/sh
# the server dies (its whole process group) and comes back on the same port
/bin/kill -s KILL -- -\$(cat "$d/pid")
for i in \$(seq 1 100); do kill -0 \$(cat "$d/pid") 2>/dev/null || break; sleep 0.1; done
exec "$d/start.sh"
SH
    chmod 755 "$d/start.sh" "$d/restart.sh"
    chown -R postgres "$d"
    chmod 600 "$d"/*.key
    runuser -u postgres -- "$d/start.sh"
}

# pgck_prov_kmip_stop DIR: the server's process group (setsid made it its leader)
pgck_prov_kmip_stop() {
    if [ -f "$1/pid" ]; then
        runuser -u postgres -- /bin/kill -s KILL -- "-$(cat "$1/pid")" 2>/dev/null
        rm -f "$1/pid"
    fi
}

# pgck_prov_kmipc DIR PORT CMD ARGS...: PyKMIP's client (kmip_pykmip.py CMD), as postgres
pgck_prov_kmipc() {
    runuser -u postgres -- $PGCK_PROV_PY "$PGCK_PROV_KMIP_HELPER" "$3" "$1" "$2" "${@:4}" 2>>"$1/client.err"
}

# ------------------------------------------------------------------ PKCS#11 (SoftHSM2)
PGCK_PROV_SOFTHSM=/usr/lib/softhsm/libsofthsm2.so

pgck_prov_as_hsm() {  # pgck_prov_as_hsm DIR CMD...
    local d=$1
    shift
    runuser -u postgres -- env SOFTHSM2_CONF="$d/softhsm2.conf" "$@"
}

# pgck_prov_softhsm_setup DIR PIN SOPIN: DIR (postgres's, 0700) with the logging module
# p11_logwrap.so and p11_helper built from test/pkcs11, softhsm2.conf, the PIN file DIR/pin
# (0600), and an initialised token "pg"
pgck_prov_softhsm_setup() {
    local d=$1 cflags
    [ -f "$PGCK_PROV_SOFTHSM" ] || { echo "SoftHSM2 module $PGCK_PROV_SOFTHSM missing (apt-get install softhsm2)" >&2; return 1; }
    rm -rf "$d" && mkdir -p "$d/tokens" || return 1
    cflags=$(pkg-config --cflags p11-kit-1 2>/dev/null || echo -I/usr/include/p11-kit-1)
    cc -O1 -Wall -Wextra -Werror -Wno-unused-parameter $cflags -shared -fPIC -o "$d/p11_logwrap.so" \
        "$PGCK_PROV_LIB_DIR/pkcs11/p11_logwrap.c" &&
        cc -O1 -Wall -Wextra -Werror $cflags -o "$d/p11_helper" "$PGCK_PROV_LIB_DIR/pkcs11/p11_helper.c" || return 1
    cat >"$d/softhsm2.conf" <<EOF
directories.tokendir = $d/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
    printf '%s\n' "$2" >"$d/pin"
    chown -R postgres:postgres "$d"
    chmod 700 "$d"
    chmod 600 "$d/pin"
    pgck_prov_as_hsm "$d" softhsm2-util --init-token --free --label pg --pin "$2" --so-pin "$3" >/dev/null
}

# pgck_prov_softhsm_genkey DIR PIN LABEL [extractable]: an AES-256 key made in token "pg"
# (sensitive and non-extractable unless "extractable")
pgck_prov_softhsm_genkey() {
    pgck_prov_as_hsm "$1" "$1/p11_helper" "$PGCK_PROV_SOFTHSM" genkey pg "$2" "$3" ${4:+"$4"} >/dev/null
}

# ------------------------------------------------------------------ a cluster of its own
# pgck_prov_start_cluster DIR CONF [VAR=VALUE...]: initdb DIR/data, CONF appended to its
# postgresql.conf, started with VAR=VALUE in the server's environment
pgck_prov_start_cluster() {
    local d=$1 conf=$2
    shift 2
    PGCK_PROV_PGPORT=$(pgck_prov_free_port)
    runuser -u postgres -- "$PGBIN/initdb" -D "$d/data" -A trust -U postgres --no-sync >"$d/initdb.log" 2>&1 || return 1
    cat >>"$d/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $PGCK_PROV_PGPORT
unix_socket_directories = '$d'
fsync = off
max_connections = 20
log_line_prefix = '%m [%p] %q%u@%d '
$conf
CONF
    runuser -u postgres -- env "$@" "$PGBIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t 60 start >/dev/null
}

pgck_prov_stop_cluster() {  # pgck_prov_stop_cluster DIR
    [ -f "$1/data/postmaster.pid" ] || return 0
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$1/data" -m immediate -w stop >/dev/null 2>&1 || true
}
