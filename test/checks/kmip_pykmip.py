#!/usr/bin/python3
"""Helper of test/checks/kmip_pykmip.sh: PyKMIP's server and client.

  kmip_pykmip.py serve DIR PORT          run PyKMIP's KmipServer on 127.0.0.1:PORT
                                         (certificates, sqlite db and log in DIR)
  kmip_pykmip.py create DIR PORT NAME    create and activate an AES-256 key named
                                         NAME (Encrypt|Decrypt usage); print its uid
  kmip_pykmip.py create-noactivate ...   the same, left Pre-Active
  kmip_pykmip.py revoke DIR PORT UID     revoke (key compromise: state Compromised)
  kmip_pykmip.py deactivate DIR PORT UID revoke with reason cessation (Deactivated)
  kmip_pykmip.py unwrap DIR PORT HEX CTX unwrap a kmip: blob (hex) with PyKMIP's own
                                         client, verify its check value for context
                                         CTX, print the data key in hex
  kmip_pykmip.py mute PORT               a TCP server that accepts and never answers
  kmip_pykmip.py closer PORT COUNTFILE   a TCP server that closes every connection at once,
                                         counting them in COUNTFILE

The client uses DIR/admin.crt (CN=admin... same identity as the database's
client certificate, so it owns the keys it creates).
"""
import logging
import os
import socket
import sys
import time

DIR = None


def client(port):
    from kmip.pie.client import ProxyKmipClient
    conf = os.path.join(DIR, "client.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write("[client]\n")
    return ProxyKmipClient(
        hostname="127.0.0.1", port=int(port),
        cert=os.path.join(DIR, "client.crt"), key=os.path.join(DIR, "client.key"),
        ca=os.path.join(DIR, "ca.crt"), ssl_version="PROTOCOL_TLSv1_2",
        config_file=conf)


def main():
    global DIR
    cmd = sys.argv[1]
    if cmd == "mute":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(sys.argv[2])))
        s.listen(16)
        held = []
        while True:
            c, _ = s.accept()
            held.append(c)      # never read, never answer, never close
    if cmd == "closer":
        # a server that accepts every connection and closes it at once (a transient
        # failure); the number of connections so far is written to COUNTFILE
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(sys.argv[2])))
        s.listen(16)
        n = 0
        while True:
            c, _ = s.accept()
            n += 1
            with open(sys.argv[3], "w") as f:
                f.write("%d\n" % n)
            c.close()
    DIR, port = sys.argv[2], sys.argv[3]
    if cmd == "serve":
        from kmip.services.server import KmipServer
        server = KmipServer(
            hostname="127.0.0.1", port=int(port),
            certificate_path=os.path.join(DIR, "server.crt"),
            key_path=os.path.join(DIR, "server.key"),
            ca_path=os.path.join(DIR, "ca.crt"),
            auth_suite="TLS1.2",
            config_path=None,
            log_path=os.path.join(DIR, "server.log"),
            policy_path=None,
            enable_tls_client_auth=True,
            logging_level=logging.INFO,   # DEBUG would log message bytes (data keys)
            database_path=os.path.join(DIR, "pykmip.db"))
        with server:
            server.serve()
        return
    from kmip import enums
    from kmip.core.factories import attributes
    with client(port) as c:
        if cmd in ("create", "create-noactivate"):
            uid = c.create(enums.CryptographicAlgorithm.AES, 256, name=sys.argv[4],
                           cryptographic_usage_mask=[enums.CryptographicUsageMask.ENCRYPT,
                                                     enums.CryptographicUsageMask.DECRYPT])
            if cmd == "create":
                c.activate(uid)
            print(uid)
        elif cmd == "revoke":
            c.revoke(enums.RevocationReasonCode.KEY_COMPROMISE, sys.argv[4],
                     compromise_occurrence_date=int(time.time()))
        elif cmd == "unwrap":
            import hashlib
            import hmac
            blob = bytes.fromhex(sys.argv[4])
            assert blob[:4] == b"PK\x01\x01", "not a version 1 kmip: blob"
            ulen = blob[4]
            uid = blob[5:5 + ulen]
            off = 5 + ulen
            ivlen = blob[off]
            iv = blob[off + 1:off + 1 + ivlen]
            off += 1 + ivlen
            ctlen = int.from_bytes(blob[off:off + 2], "big")
            ct = blob[off + 2:]
            assert len(ct) == ctlen, "blob length"
            pt = c.decrypt(ct, uid.decode(), cryptographic_parameters={
                "block_cipher_mode": enums.BlockCipherMode.CBC,
                "padding_method": enums.PaddingMethod.PKCS5,
                "cryptographic_algorithm": enums.CryptographicAlgorithm.AES},
                iv_counter_nonce=iv)
            dek, check = pt[:32], pt[32:]
            want = hmac.new(dek, b"pgcrypt_kms kmip v1\0" + uid + b"\0" + sys.argv[5].encode(),
                            hashlib.sha256).digest()[:16]
            if len(pt) != 48 or not hmac.compare_digest(want, check):
                sys.exit("check value mismatch")
            print(dek.hex())
        elif cmd == "deactivate":
            c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, sys.argv[4])
        else:
            sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
