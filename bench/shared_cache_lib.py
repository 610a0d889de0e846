"""What the shared-cache bench drivers (bench/shared_cache*.py, run as the postgres OS user
against the cluster their .sh started) share: the connection, the emulator's control calls,
and a restart with another pgcrypt_kms.shared_cache_size."""
import json, os, re, subprocess
import psycopg

HOST, PORT, PGBIN, PGDATA = (os.environ[k] for k in ('PGHOST', 'PGPORT', 'PGBIN', 'PGCK_PGDATA'))


def connect(db):
    return psycopg.connect(host=HOST, port=PORT, dbname=db, user='postgres', autocommit=True)


def emuctl(*args):
    """A control call to the KMS emulator (PGCK_EMULATOR_PORT); its JSON answer, parsed."""
    out = subprocess.run(['/usr/bin/python3', f"{os.environ['PGCK_ROOT']}/test/kms_emulator/emuctl.py",
                          os.environ['PGCK_EMULATOR_PORT']] + list(args),
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip().startswith('{') else out


def decrypts():
    """Decrypt calls the emulator has answered so far."""
    return emuctl('stats')['calls'].get('Decrypt', 0)


def restart(shared_size):
    """Restart the cluster with pgcrypt_kms.shared_cache_size = shared_size (0: off)."""
    conf = os.path.join(PGDATA, 'postgresql.conf')
    text = open(conf).read()
    text = re.sub(r'(?m)^pgcrypt_kms\.shared_cache_size = .*$', f'pgcrypt_kms.shared_cache_size = {shared_size}', text)
    open(conf, 'w').write(text)
    subprocess.run([f'{PGBIN}/pg_ctl', '-D', PGDATA, '-m', 'fast', '-w', 'restart', '-l',
                    os.path.join(os.path.dirname(PGDATA), 'server.log')], check=True, capture_output=True)
