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
	# the decryption drill on the restored backup: every version decrypts, nothing fails
	is($dst->safe_psql($db, q{SELECT string_agg(key_name || ' v' || version || ': ' || decrypted || ' ok, ' || failed || ' failed', '; ' ORDER BY key_name, version) FROM kms_verify('users', 'email')}),
		'email v1: 500 ok, 0 failed; email v2: 1 ok, 0 failed', "$db: kms_verify on the restored backup");
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
# the drill on a restore without KMS access: every value fails, no plaintext, the error says why
my $drill = $other->safe_psql('postgres', q{SELECT string_agg(version_id || ': ' || decrypted || '/' || failed || ' ' || coalesce(error, ''), '; ' ORDER BY version_id) FROM kms_verify('users', 'email')});
like($drill, qr/^1: 0\/500 could not unwrap a data key with local key "dump".*58000.*; 3: 0\/1 /, 'kms_verify without KMS access: every value fails, with the reason');
unlike($drill, qr/PlainUser/i, '... and no plaintext');

# crypto-shredding, then a new dump: nothing in it can decrypt the destroyed key's values
my $wrapped = $src->safe_psql('postgres', q{SELECT string_agg(encode(wrapped_dek, 'hex'), ',') FROM pgcrypt_kms.key_versions WHERE key_name = 'account'});
ok(length($wrapped) > 100, 'the account key has wrapped DEKs before destruction');
$src->safe_psql('postgres', q{SELECT kms_destroy_key('account', 'account')});
my $after = "$tmp/after-destroy.sql";
$src->command_ok([ 'pg_dump', '-d', $src->connstr('postgres'), '-f', $after ], 'pg_dump after kms_destroy_key');
my $after_dump = slurp_file($after);
my $found = grep { index($after_dump, $_) >= 0 } split /,/, $wrapped;
is($found, 0, 'the dump holds none of the destroyed wrapped DEKs');
my $dst2 = PostgreSQL::Test::Cluster->new('dst2');
$dst2->init;
$dst2->append_conf('postgresql.conf', "pgcrypt_kms.local_key_file = '$keycopy'");
$dst2->start;
$dst2->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $dst2->connstr('postgres'), '-f', $after ],
	'restore the dump taken after destruction (same master key file)');
($ret, $stdout, $stderr) = $dst2->psql('postgres', 'SELECT kms_decrypt(account_id) FROM users WHERE id = 1');
like($stderr, qr/key "account" version 1 was destroyed/, 'even with the master key, the destroyed key\'s values do not decrypt');
is($dst2->safe_psql('postgres', q{SELECT count(*) FROM users WHERE kms_decrypt(email) IS NOT NULL}), '501',
	'the other key still decrypts everything');
$dst2->stop;

$src->stop;
$dst->stop;
$other->stop;
done_testing();
