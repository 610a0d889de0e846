# pg_dump carries only ciphertext and the wrapped keyring; a restore into
# another cluster decrypts with the same master key and fails clearly without.
use strict;
use warnings;
use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $keyfile = "$tmp/master.key";

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init;
$src->append_conf('postgresql.conf', "pgcrypt_kms.local_key_file = '$keyfile'");
$src->start;

$src->safe_psql('postgres', q{
	CREATE EXTENSION pgcrypt_kms;
	SELECT kms_create_key('email', 'local:dump', blind_index => 'email');
	SELECT kms_create_key('account', 'local:dump', blind_index => 'exact');
	CREATE TABLE users (id int PRIMARY KEY, email enc_text NOT NULL, account_id enc_text, note enc_text);
	CREATE INDEX users_email_bidx ON users (kms_blind_index(email));
	INSERT INTO users
	SELECT g, kms_encrypt('PlainUser' || g || '@Example.com', 'email'),
	       kms_encrypt('PlainAcct-' || g, 'account'),
	       kms_encrypt('PlainNote ' || g, 'account', 'users.note:' || g)
	  FROM generate_series(1, 500) g;
	SELECT kms_rotate_key('email');
	INSERT INTO users VALUES (501, kms_encrypt('PlainUser501@Example.com', 'email'), NULL, NULL);
});
ok(-f $keyfile, 'local master key file created on first use');
is(sprintf('%04o', (stat $keyfile)[2] & 07777), '0600', 'master key file is mode 0600');

my $checksum_sql = q{
	SELECT count(*) || ':' || md5(string_agg(kms_decrypt(email) || '|' ||
	       coalesce(kms_decrypt(account_id), '') || '|' ||
	       coalesce(kms_decrypt(note, 'users.note:' || id), ''), ',' ORDER BY id))
	  FROM users};
my $expected = $src->safe_psql('postgres', $checksum_sql);
like($expected, qr/^501:/, 'source decrypts all rows');

# plain and custom-format dumps hold no plaintext and no unwrapped key
my $plain = "$tmp/dump.sql";
my $custom = "$tmp/dump.custom";
$src->command_ok([ 'pg_dump', '-d', $src->connstr('postgres'), '-f', $plain ], 'pg_dump plain');
$src->command_ok([ 'pg_dump', '-Fc', '-Z', '0', '-d', $src->connstr('postgres'), '-f', $custom ], 'pg_dump custom');
my $dump = slurp_file($plain);
unlike($dump, qr/Plain(User|Acct|Note)/i, 'plain dump holds no plaintext');
like($dump, qr/pgck:/, 'plain dump holds ciphertext');
like($dump, qr/COPY pgcrypt_kms\.key_versions/, 'plain dump carries the keyring');
my $raw = slurp_file($custom);
unlike($raw, qr/Plain(User|Acct|Note)/i, 'custom dump (uncompressed, so the check means something) holds no plaintext');
my $master = slurp_file($keyfile);
ok(index($dump, $master) < 0 && index($raw, $master) < 0, 'no dump holds the master key bytes');

# restore into another cluster that has the same master key file
my $dst = PostgreSQL::Test::Cluster->new('dst');
$dst->init;
my $keycopy = "$tmp/master-copy.key";
copy($keyfile, $keycopy) or die "copy: $!";
chmod 0600, $keycopy;
$dst->append_conf('postgresql.conf', "pgcrypt_kms.local_key_file = '$keycopy'");
$dst->start;
$dst->safe_psql('postgres', 'CREATE DATABASE plainrestore');
$dst->safe_psql('postgres', 'CREATE DATABASE customrestore');
$dst->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $dst->connstr('plainrestore'), '-f', $plain ],
	'restore the plain dump');
$dst->command_ok([ 'pg_restore', '--exit-on-error', '-d', $dst->connstr('customrestore'), $custom ],
	'pg_restore the custom dump');
for my $db (qw(plainrestore customrestore)) {
	is($dst->safe_psql($db, $checksum_sql), $expected, "$db: every value decrypts to the original");
	is($dst->safe_psql($db, q{
		SET enable_seqscan = off;
		SELECT id FROM users WHERE kms_blind_index(email) = kms_blind_index('plainuser42@example.com', 'email')}),
		'42', "$db: blind-index lookup after restore");
	is($dst->safe_psql($db, q{SELECT count(*) FROM kms_keys}), '3', "$db: keyring restored (3 versions)");
	# the restored sequence does not hand out an id already in use
	$dst->safe_psql($db, q{SELECT kms_rotate_key('account')});
	is($dst->safe_psql($db, q{SELECT count(*) FROM users WHERE kms_decrypt(account_id) IS NOT NULL}), '500',
		"$db: rotation after restore keeps old values readable");
}

# a cluster with another master key file: restore works, decryption fails clearly
my $other = PostgreSQL::Test::Cluster->new('other');
$other->init;
$other->append_conf('postgresql.conf', "pgcrypt_kms.local_key_file = '$tmp/other.key'");
$other->start;
$other->command_ok([ 'pg_restore', '--exit-on-error', '-d', $other->connstr('postgres'), $custom ],
	'restore without the master key succeeds (ciphertext only)');
my ($ret, $stdout, $stderr) = $other->psql('postgres', 'SELECT kms_decrypt(email) FROM users WHERE id = 1',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'decryption without the master key fails');
like($stderr, qr/58000/, 'with SQLSTATE 58000');
like($stderr, qr/could not unwrap a data key with local key "dump"/, 'naming the key that cannot be unwrapped');
unlike($stderr, qr/PlainUser/, 'and no plaintext in the error');
is($other->safe_psql('postgres', q{SELECT id FROM users WHERE kms_blind_index(email) = (SELECT kms_blind_index(email) FROM users WHERE id = 7)}),
	'7', 'tag lookups by carried value still work without keys');

$src->stop;
$dst->stop;
$other->stop;
done_testing();
