# Disaster recovery in the database (issue 15), against the KMS emulator:
#   1. additional wrappings: kms_add_wrapping (a second AWS KMS key, by ReEncrypt) and
#      kms_add_escrow_key (RSA-3072 OAEP-SHA-256) wrap every data key version and the index
#      keys; rotation, automatic rotation and index key rotation wrap the new secret under every
#      wrapping at creation; the escrow blobs decrypt with the private key (outside the server,
#      with python3-cryptography) to keys matching their key-check values; small, non-RSA and
#      private keys are refused without echoing the PEM; only the admin role may call them;
#   2. fallback: with the primary key unreachable (connection reset after the retries) every
#      value decrypts through the second wrapping, logged once per key version and counted in
#      kms_cache_stats().kms_fallbacks; access denied on the primary does not fall back (42501,
#      the second key is never asked); pgcrypt_kms.wrapping_regions asks the second key first;
#   3. the drill: a pg_dump of a database with values under two versions, a blind index and a
#      named index, restored into a fresh cluster whose KMS has the primary key disabled, then
#      pending deletion, then deleted: every value decrypts and every probe matches through the
#      second wrapping, the fallback logged once per version and counted;
#   4. kms_verify_wrappings reports every version under every wrapping (ok / failed /
#      unverifiable for escrow);
#   5. crypto-shredding (kms_destroy_key) leaves no blob of the key under any wrapping;
#      kms_remove_wrapping deletes its blobs.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PgckAws;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

aws_clean_env();
my $root = pgck_root();
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $py = '/usr/bin/python3';

my %static_env = (
	AWS_ACCESS_KEY_ID => 'AKIDPGCKTEST000000001',
	AWS_SECRET_ACCESS_KEY => 'pgck-test-secret-0000000000000000000000',
	AWS_CONFIG_FILE => '/dev/null',
	AWS_SHARED_CREDENTIALS_FILE => '/dev/null',
	AWS_EC2_METADATA_DISABLED => 'true',
);
local @ENV{ keys %static_env } = values %static_env;

my $emu = start_emulator(dir => "$tmp/emu");
# the primary in us-east-1, the second key in eu-west-1 (the emulator's keys are visible
# from every region; an ARN must name the region its request is signed for)
my $primary = ctl($emu, 'create-key', { region => 'us-east-1', description => 'primary' });
my $second = ctl($emu, 'create-key', { region => 'eu-west-1', description => 'second' });
my $p_arn = $primary->{arn};
my $s_arn = $second->{arn};
like($s_arn, qr/:eu-west-1:/, 'second key ARN in eu-west-1');

sub new_node
{
	my ($name) = @_;
	my $n = PostgreSQL::Test::Cluster->new($name);
	$n->init;
	$n->append_conf('postgresql.conf', qq{
pgcrypt_kms.aws_endpoint = '$emu->{url}'
pgcrypt_kms.aws_region = 'us-east-1'
pgcrypt_kms.kms_max_attempts = 2
pgcrypt_kms.kms_timeout = 5000
pgcrypt_kms.kms_connect_timeout = 1000
log_min_messages = info
});
	$n->start;
	return $n;
}

sub sqlstate_of
{
	my ($err) = @_;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
}

sub psql_v
{
	my ($n, $sql) = @_;
	return psql_timed($n, $sql);
}

# ------------------------------------------------------------------ keys made offline
my $escrow_priv = "$tmp/escrow.pem";
my $escrow_pub = "$tmp/escrow.pub.pem";
system('openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:3072',
	'-out', $escrow_priv) == 0 or die 'openssl genpkey';
system('openssl', 'pkey', '-in', $escrow_priv, '-pubout', '-out', $escrow_pub) == 0 or die 'openssl pkey';
system("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null | openssl pkey -pubout -out $tmp/small.pub.pem") == 0
  or die 'small key';
system("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null | openssl pkey -pubout -out $tmp/ec.pub.pem") == 0
  or die 'ec key';
my $pub_pem = slurp_file($escrow_pub);
my $priv_pem = slurp_file($escrow_priv);
my $der_fp = `openssl pkey -pubin -in $escrow_pub -outform DER | sha256sum`;
$der_fp =~ s/\s.*//s;
sub q_lit { my ($s) = @_; $s =~ s/'/''/g; return "'$s'"; }

# ================================================================== 1. wrappings
my $src = new_node('src');
$src->safe_psql('postgres', qq{
	CREATE EXTENSION pgcrypt_kms;
	-- one transaction: an index added to a key of an earlier transaction gives it a new version
	BEGIN;
	SELECT kms_create_key('cust', 'aws-kms:$p_arn', blind_index => 'lower');
	SELECT kms_add_index('cust', 'dom', 'domain', 64);
	COMMIT;
	CREATE TABLE people (id int PRIMARY KEY, email enc_text, amount enc_text);
	INSERT INTO people SELECT g, kms_encrypt('Person' || g || '\@Example' || (g % 3) || '.org', 'cust'),
	                          kms_encrypt((g * 1000)::int8, 'cust')
	  FROM generate_series(1, 20) g;
});

# additions: a second KMS key and an escrow key, wrapping the existing version 1 and index key
ctl($emu, 'reset-stats');
is($src->safe_psql('postgres', qq{SELECT kms_add_wrapping('cust', 'aws-kms:$s_arn')}), '1',
	'kms_add_wrapping returns wrapping 1');
my $st = ctl($emu, 'stats');
ok(!($st->{calls}{ReEncrypt}) && ($st->{calls}{Decrypt} // 0) == 2 && ($st->{calls}{Encrypt} // 0) == 2,
	'across regions (ReEncrypt is regional) each secret is decrypted in its region and encrypted in the other')
  or diag explain $st->{calls};
# within a region: ReEncrypt, no plaintext key leaves KMS
my $third = ctl($emu, 'create-key', { region => 'us-east-1', description => 'same region' });
$src->safe_psql('postgres', qq{SELECT kms_create_key('same', 'aws-kms:$p_arn', blind_index => 'exact')});
ctl($emu, 'reset-stats');
$src->safe_psql('postgres', qq{SELECT kms_add_wrapping('same', 'aws-kms:$third->{arn}')});
$st = ctl($emu, 'stats');
ok(($st->{calls}{ReEncrypt} // 0) == 2 && !($st->{calls}{Decrypt}) && !($st->{calls}{Encrypt}),
	'within a region the second wrapping is made by ReEncrypt: no plaintext key left KMS')
  or diag explain $st->{calls};
ctl($emu, 'reset-stats');
$src->safe_psql('postgres', q{SELECT kms_rotate_key('same')});
$st = ctl($emu, 'stats');
ok(($st->{calls}{GenerateDataKey} // 0) == 1 && ($st->{calls}{ReEncrypt} // 0) == 1,
	'kms_rotate_key wraps the new version under the wrapping at creation (ReEncrypt of the new blob)')
  or diag explain $st->{calls};
is($src->safe_psql('postgres', 'SELECT kms_add_escrow_key(\'cust\', ' . q_lit($pub_pem) . ')'), '2',
	'kms_add_escrow_key returns wrapping 2');
is($src->safe_psql('postgres', q{SELECT fingerprint FROM kms_key_wrappings WHERE wrapping = 2}), $der_fp,
	'the escrow fingerprint is SHA-256 of the DER public key (openssl pkey -outform DER | sha256sum)');

# refusals
for my $bad ([ "$tmp/small.pub.pem", 'an RSA-2048 key', qr/shorter than 3072 bits/ ],
	[ "$tmp/ec.pub.pem", 'an EC key', qr/not an RSA encryption key/ ],
	[ $escrow_priv, 'a private key', qr/not a PEM public key/ ])
{
	my $r = psql_v($src, 'SELECT kms_add_escrow_key(\'cust\', ' . q_lit(slurp_file($bad->[0])) . ')');
	is(sqlstate_of($r->{err}), '22023', "$bad->[1] is refused with 22023");
	like($r->{err}, $bad->[2], "$bad->[1]: the error says why");
	unlike($r->{err}, qr/-----|MII[A-Za-z0-9+\/]{16}/, "$bad->[1]: the PEM is not echoed");
}
{
	my $r = psql_v($src, q{SET ROLE pgcrypt_kms_decrypt; SELECT kms_add_wrapping('cust', 'aws-kms:alias/pgck-test')});
	is(sqlstate_of($r->{err}), '42501', 'kms_add_wrapping is for the admin role only');
	$r = psql_v($src, q{SET ROLE pgcrypt_kms_encrypt; SELECT * FROM kms_verify_wrappings('cust')});
	is(sqlstate_of($r->{err}), '42501', 'kms_verify_wrappings is for the admin role only');
}

# rotations after the wrappings exist: index key (which rotates the data key too, as
# kms_rotate_key does), automatic
is($src->safe_psql('postgres', q{SELECT kms_rotate_index_key('cust')}), '2', 'index key rotated');
is($src->safe_psql('postgres', q{SELECT count(*) FROM kms_keys WHERE key_name = 'cust'}), '2',
	'... and with it the data key: a second version');
$src->safe_psql('postgres', q{
	INSERT INTO people SELECT g, kms_encrypt('Person' || g || '@Example' || (g % 3) || '.org', 'cust'),
	                          kms_encrypt((g * 1000)::int8, 'cust')
	  FROM generate_series(21, 40) g;
});
# the automatic rotation: dek_rotate_after (test-only) rotates after 3 encryptions; a local:
# primary, so the KMS wrapping is made across providers (unwrapped here, AWS Encrypt)
$src->append_conf('postgresql.conf', "pgcrypt_kms.local_key_file = '$tmp/local.key'");
$src->reload;
$src->safe_psql('postgres', q{
	SELECT kms_create_key('auto', 'local:escrow-auto');
});
$src->safe_psql('postgres', qq{
	SELECT kms_add_escrow_key('auto', } . q_lit($pub_pem) . qq{);
	SELECT kms_add_wrapping('auto', 'aws-kms:$s_arn');
	CREATE TABLE autos (v enc_text);
});
$src->safe_psql('postgres', q{
	SET pgcrypt_kms.dek_rotate_after = 3;
	INSERT INTO autos SELECT kms_encrypt('auto ' || g, 'auto') FROM generate_series(1, 12) g;
});
my $auto_versions = $src->safe_psql('postgres', q{SELECT count(*) FROM kms_keys WHERE key_name = 'auto'});
cmp_ok($auto_versions, '>', 1, "automatic rotation made new versions ($auto_versions)");
is($src->safe_psql('postgres', q{
	SELECT string_agg(wrapping || ':' || dek_versions, ',' ORDER BY wrapping) FROM kms_key_wrappings WHERE key_name = 'auto'}),
	"1:$auto_versions,2:$auto_versions",
	'every automatically rotated version is wrapped under both wrappings (escrow, and KMS across providers)');

is($src->safe_psql('postgres', q{
	SELECT string_agg(wrapping || ':' || kind || ':' || dek_versions || ':' || index_keys, ',' ORDER BY wrapping)
	  FROM kms_key_wrappings WHERE key_name = 'cust'}),
	'1:kms:2:2,2:escrow:2:2',
	'both wrappings hold both data key versions and the current and previous index keys');

# the escrow blobs decrypt offline to the right keys (FORMAT.md 11.4)
my $rows = $src->safe_psql('postgres', q{
	SELECT secret || ' ' || version || ' ' || encode(wrapped, 'hex') || ' ' || encode(key_check, 'hex')
	  FROM pgcrypt_kms.wrapped_keys WHERE wrapping = 2 AND key_name = 'cust' ORDER BY secret, version});
my $checker = "$tmp/escrow_check.py";
open(my $fh, '>', $checker) or die;
print $fh <<'PY';
import hashlib, hmac, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
priv = serialization.load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)
good = 0
for line in sys.stdin.read().split('\n'):
    if not line.strip():
        continue
    secret, version, blob, check = line.split()
    key = priv.decrypt(bytes.fromhex(blob), padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                       algorithm=hashes.SHA256(), label=None))
    kc = hmac.new(key, b'pgcrypt_kms key check v1', hashlib.sha256).digest()[:16]
    if len(key) == 32 and len(bytes.fromhex(blob)) == 384 and kc.hex() == check:
        good += 1
print(good)
PY
close $fh;
my $good = `echo '$rows' | $py $checker $escrow_priv`;
chomp $good;
is($good, '4', 'the private key recovers all 4 escrowed keys (2 DEK versions, 2 index keys), each matching its key-check value');

# kms_verify_wrappings: primary and second unwrap, escrow unverifiable (well formed)
is($src->safe_psql('postgres', q{
	SELECT string_agg(secret || version || '/' || wrapping || '=' || status, ' ' ORDER BY secret, version, wrapping)
	  FROM kms_verify_wrappings('cust')}),
	'dek1/0=ok dek1/1=ok dek1/2=unverifiable dek2/0=ok dek2/1=ok dek2/2=unverifiable '
	  . 'index1/0=ok index1/1=ok index1/2=unverifiable index2/0=ok index2/1=ok index2/2=unverifiable',
	'kms_verify_wrappings: every version under every wrapping');
like($src->safe_psql('postgres', q{SELECT detail FROM kms_verify_wrappings('cust') WHERE kind = 'escrow' LIMIT 1}),
	qr/cannot be checked without the private key/, 'the escrow row says why it is not unwrapped');

# a tampered escrow blob is reported malformed; a tampered KMS blob failed
{
	my $r = psql_v($src, q{
	BEGIN;
	UPDATE pgcrypt_kms.wrapped_keys SET wrapped = substr(wrapped, 2) WHERE key_name = 'cust' AND wrapping = 2 AND secret = 'dek' AND version = (SELECT min(id) FROM pgcrypt_kms.key_versions WHERE key_name = 'cust');
	UPDATE pgcrypt_kms.wrapped_keys SET wrapped = set_byte(wrapped, 40, get_byte(wrapped, 40) # 1) WHERE key_name = 'cust' AND wrapping = 1 AND secret = 'index' AND version = 1;
	SELECT string_agg(secret || version || '/' || wrapping || '=' || status, ' ' ORDER BY secret, version, wrapping)
	  FROM kms_verify_wrappings('cust') WHERE status NOT IN ('ok', 'unverifiable');
	ROLLBACK;});
	like($r->{out}, qr/^dek1\/2=malformed index1\/1=failed$/m, 'kms_verify_wrappings finds a cut escrow blob and an altered KMS blob');
}

# ------------------------------------------------------------------ the checksum of everything
my $check_sql = q{
	SELECT count(*) || ':' || md5(string_agg(kms_decrypt(email) || '|' || kms_decrypt_int8(amount), ',' ORDER BY id))
	       || ':' || count(*) FILTER (WHERE kms_blind_index(email) = ANY (kms_blind_index_all(kms_decrypt(email), 'cust')))
	       || ':' || count(*) FILTER (WHERE kms_blind_tag(email, 'dom') = kms_blind_tag(kms_decrypt(email), 'cust', 'dom'))
	  FROM people};
my $expected = $src->safe_psql('postgres', $check_sql);
# rows 1-20 were tagged under the first index key (blind_index_all probes with both), rows 21-40
# under the second (the named index probes with the current one only)
like($expected, qr/^40:[0-9a-f]{32}:40:20$/, 'source: 40 values decrypt, 40 blind-index and 20 named-index probes match');
is($src->safe_psql('postgres', q{SELECT count(DISTINCT kms_version_id(email)) FROM people}), '2', 'values under two versions');

# ================================================================== 2. fallback in the source
# primary unreachable: every connection naming it is reset, after the retries
ctl($emu, 'set-fault', { op => '*', kind => 'reset', count => -1, key_id => $p_arn });
my $log_off = -s $src->logfile;
{
	my $r = psql_v($src, $check_sql . q{; SELECT kms_flush_cache(); } . $check_sql
		  . q{; SELECT kms_fallbacks FROM kms_cache_stats();});
	my @out = grep { $_ ne '' } split /\n/, $r->{out};
	is($out[0], $expected, 'primary unreachable: everything decrypts and every probe matches through the second key');
	is($out[1], $expected, '... again after kms_flush_cache');
	is($out[2], '8', 'kms_fallbacks counts every fallback (4 secrets: 2 DEK versions, 2 index keys; x 2 unwraps)');
}
{
	my $log = substr(slurp_file($src->logfile), $log_off);
	my @lines = $log =~ /(the primary KMS key of key "cust" refused the [^\n]*)/g;
	is(scalar(@lines), 4, 'the fallback is logged once per key version (2 DEK versions, current and previous index key), not per unwrap')
	  or diag join("\n", @lines);
	like($lines[0] // '', qr/SQLSTATE 58000\); unwrapped through wrapping 1 \("aws-kms:arn:aws:kms:eu-west-1:/,
		'the log line names the refusal and the wrapping used');
}
ctl($emu, 'clear-faults');

# access denied on the primary: no fallback, the second key is never asked
ctl($emu, 'set-fault', { op => '*', kind => 'access_denied', count => -1, key_id => $p_arn });
ctl($emu, 'reset-stats');
{
	my $r = psql_v($src, q{SELECT kms_decrypt(email) FROM people WHERE id = 1});
	is(sqlstate_of($r->{err}), '42501', 'access denied on the primary: 42501, no fallback');
	my @to_second = grep { ($_->{key_arn} // '') eq $s_arn } @{ ctl($emu, 'call-log')->{calls} };
	is(scalar(@to_second), 0, 'the second key was not asked after a denial');
}
ctl($emu, 'clear-faults');

# a pinned region order: the second key (eu-west-1) first, the primary not asked
ctl($emu, 'reset-stats');
{
	my $r = psql_v($src, q{SET pgcrypt_kms.wrapping_regions = 'eu-west-1, us-east-1'; SELECT count(kms_decrypt(email)) FROM people;
		SELECT kms_fallbacks FROM kms_cache_stats();});
	is($r->{out}, "40\n0", 'wrapping_regions: decrypts, and a preferred order is not a fallback');
	my @calls = grep { $_->{op} eq 'Decrypt' } @{ ctl($emu, 'call-log')->{calls} };
	ok(@calls && !(grep { ($_->{key_arn} // '') eq $p_arn } @calls),
		'wrapping_regions = eu-west-1: only the eu-west-1 key was asked');
}

# ================================================================== 3. the drill: dump, restore, primary gone
my $dump = "$tmp/dump.sql";
$src->command_ok([ 'pg_dump', '-d', $src->connstr('postgres'), '-f', $dump ], 'pg_dump');
like(slurp_file($dump), qr/COPY pgcrypt_kms\.wrapped_keys/, 'the dump carries the additional wrappings');

my $dst = new_node('dst');
$dst->safe_psql('postgres', 'CREATE DATABASE restored');
$dst->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $dst->connstr('restored'), '-f', $dump ],
	'restore into a fresh cluster');

my $n = 0;
for my $case ([ 'disable-key', 'disabled', '55000', 'DisabledException' ],
	[ 'schedule-deletion', 'pending deletion', '55000', 'KMSInvalidStateException' ],
	[ 'delete-key', 'not found (deleted)', '42704', 'NotFoundException' ])
{
	my ($cmd, $what, $state, $type) = @$case;
	ctl($emu, $cmd, { key_id => $p_arn });
	ctl($emu, 'reset-stats');
	$dst->restart;    # a fresh log position and fresh backends
	my $off = -s $dst->logfile;
	my $r = psql_timed($dst, $check_sql . q{; SELECT kms_flush_cache(); } . $check_sql
		  . q{; SELECT kms_fallbacks FROM kms_cache_stats();}, db => 'restored');
	my @out = grep { $_ ne '' } split /\n/, $r->{out};
	is($out[0], $expected, "restored, primary $what: every value decrypts and every probe matches")
	  or diag $r->{err};
	is($out[1], $expected, "restored, primary $what: again after a cache flush");
	is($out[2], '8', "restored, primary $what: 8 fallbacks counted (4 secrets, twice)");
	my $log = substr(slurp_file($dst->logfile), $off);
	my @lines = $log =~ /(the primary KMS key of key "cust" refused the [^\n]*)/g;
	is(scalar(@lines), 4, "restored, primary $what: logged once per key version");
	ok(!(grep { !/SQLSTATE $state\)/ } @lines), "restored, primary $what: the log gives SQLSTATE $state");
	my @errs = grep { ($_->{error} // '') eq $type } @{ ctl($emu, 'call-log')->{calls} };
	ok(scalar(@errs) > 0, "restored, primary $what: the KMS answered $type");
	$n++;
}
is($n, 3, 'three drill cases ran');

# kms_verify_wrappings in the restored cluster: the primary fails, the second unwraps
is($dst->safe_psql('restored', q{
	SELECT string_agg(DISTINCT wrapping || '=' || status, ' ' ORDER BY wrapping || '=' || status) FROM kms_verify_wrappings('cust')}),
	'0=failed 1=ok 2=unverifiable', 'restored: kms_verify_wrappings shows the primary failing and the second key working');

# ================================================================== 5. removal and crypto-shredding
$src->safe_psql('postgres', q{SELECT kms_remove_wrapping('auto', 1)});
is($src->safe_psql('postgres', q{SELECT count(*) FROM pgcrypt_kms.wrapped_keys WHERE key_name = 'auto' AND wrapping = 1}),
	'0', 'kms_remove_wrapping deletes its blobs');
cmp_ok($src->safe_psql('postgres', q{SELECT count(*) FROM pgcrypt_kms.wrapped_keys WHERE key_name = 'auto' AND wrapping = 2}),
	'>', 0, '... and only its own');
# forced: people keeps values under both versions on purpose (the recovery tests above), and the
# unforced call refuses while any value is not yet re-tagged (regress/blind_lookup tests that)
$src->safe_psql('postgres', q{SELECT kms_finish_index_rotation('cust', force => true)});
is($src->safe_psql('postgres', q{SELECT string_agg(DISTINCT wrapping || ':' || version, ',' ORDER BY wrapping || ':' || version) FROM pgcrypt_kms.wrapped_keys WHERE key_name = 'cust' AND secret = 'index'}),
	'1:2,2:2', 'kms_finish_index_rotation deletes the previous index key under every wrapping');
$src->safe_psql('postgres', q{SELECT kms_destroy_key('cust', 'cust'); SELECT kms_destroy_key('auto', 'auto'); SELECT kms_destroy_key('same', 'same')});
is($src->safe_psql('postgres', q{SELECT count(*) FROM pgcrypt_kms.wrapped_keys}), '0',
	'after kms_destroy_key no blob of any version remains under any wrapping');
$src->command_ok([ 'pg_dump', '-d', $src->connstr('postgres'), '-f', "$tmp/after.sql" ], 'pg_dump after destroy');
my $after = slurp_file("$tmp/after.sql");
like($after, qr/COPY pgcrypt_kms\.wrapped_keys \([^)]*\) FROM stdin;\n\\\.\n/,
	'the dump after destroy holds no wrapped_keys row');

$src->stop;
$dst->stop;
stop_child($emu->{pid});
done_testing();
