# The production nonce bound, pgcrypt_kms.dek_rotate_after left at 0 (every other test
# lowers it): the encryption that brings a version's count to 2^31 rotates the key, the
# one before does not; where it cannot rotate (a read-only transaction) encryption goes on
# up to 2^32 and the next is refused (55000).  Reaching those counts takes no 2^31
# encryptions: the counts file (PGDATA/pgcrypt_kms_usage.dat, saved at a clean shutdown:
# a 4-byte magic, a 16-byte header whose first word's low bit says "saved at a clean
# shutdown", then records of a 16-byte nonce space, two zero 32-bit words and a 64-bit count
# in host order) is rewritten while the cluster is stopped.  A file saved at a clean
# shutdown reloads exactly; after a crash the reload adds a pad, measured here rather than
# assumed, and only once per crash (before 2026-12-05 every restart added it, 2^21 each).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PgckCrash;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $node = PostgreSQL::Test::Cluster->new('bound');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pgcrypt_kms'
pgcrypt_kms.local_key_file = '$tmp/master.key'
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pgcrypt_kms;
	SELECT kms_create_key('rw', 'local:bound');
	SELECT kms_create_key('ro', 'local:bound');
	SELECT kms_encrypt('x', 'rw'), kms_encrypt('x', 'ro');
});
is($node->safe_psql('postgres', 'SHOW pgcrypt_kms.dek_rotate_after'), '0',
	'pgcrypt_kms.dek_rotate_after is left at its default (0: the built-in bound)');

sub count_of
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT encryptions FROM kms_keys WHERE key_name = '$key' AND version = 1});
}

sub current_version
{
	my ($key) = @_;
	return $node->safe_psql('postgres', qq{SELECT version FROM kms_keys WHERE key_name = '$key' AND current});
}

my %space = map {
	my $k = $_;
	($k => $node->safe_psql('postgres',
		qq{SELECT replace(nonce_space::text, '-', '') FROM pgcrypt_kms.key_versions WHERE key_name = '$k' AND version = 1}))
} qw(rw ro);

# a clean restart saves the exact count (1) and reloads it exactly, however often
$node->restart;
is(count_of('rw'), 1, 'a clean restart reloads the exact count');
$node->restart;
is(count_of('rw'), 1, '... also the next one (no pad piles up)');
# a crash pads, once
crash_restart($node);
my $pad = count_of('rw') - 1;
cmp_ok($pad, '>', 0, "after a crash the count is reloaded with a pad of $pad");
cmp_ok($pad, '<', 1 << 30, '... far below the bound');
$node->restart;
is(count_of('rw'), 1 + $pad, '... which a clean restart then keeps, without adding another');
crash_restart($node);
is(count_of('rw'), 1 + 2 * $pad, '... and a second crash adds once more');

# set the counts in the file (whatever the crashes above added): after the reload, rw is at
# 2^31 - 2 and ro at 2^32 - 1
$node->stop;
my $file = $node->data_dir . '/pgcrypt_kms_usage.dat';
my %want = (rw => 2**31 - 2, ro => 2**32 - 1);
open(my $fh, '<:raw', $file) or die "$file: $!";
my $data = do { local $/; <$fh> };
close $fh;
is(length($data) % 32, 20, 'the counts file is a 4-byte magic, a 16-byte header and 32-byte records');
is(unpack('L', substr($data, 4, 4)) & 1, 1, '... saved at a clean shutdown');
my $set = 0;
for (my $off = 20; $off + 32 <= length($data); $off += 32)
{
	my $sp = unpack('H32', substr($data, $off, 16));
	for my $k (keys %want)
	{
		next unless $sp eq $space{$k};
		substr($data, $off + 24, 8) = pack('Q', $want{$k});
		$set++;
	}
}
is($set, 2, 'both versions have a record in the counts file');
open($fh, '>:raw', $file) or die "$file: $!";
print $fh $data;
close $fh;
$node->start;
is(count_of('rw'), 2**31 - 2, 'rw version 1 is reloaded at 2^31 - 2 encryptions');
is(count_of('ro'), 2**32 - 1, 'ro version 1 is reloaded at 2^32 - 1 encryptions');

# 2^31 - 1: no rotation yet; 2^31: this encryption rotates the key
$node->safe_psql('postgres', q{SELECT kms_encrypt('x', 'rw')});
is(current_version('rw'), '1', 'the encryption that brings the count to 2^31 - 1 does not rotate');
$node->safe_psql('postgres', q{SELECT kms_encrypt('x', 'rw')});
is(current_version('rw'), '2', 'the encryption that brings the count to 2^31 rotates the key');
is($node->safe_psql('postgres', q{SELECT encryptions FROM kms_keys WHERE key_name = 'rw' AND version = 2}), '1',
	'... and is itself sealed under the new version');
like(slurp_file($node->logfile), qr/pgcrypt_kms: rotated key "rw" from version 1 to 2 \(encryption count\)/,
	'the rotation is logged with its reason');

# read-only: no rotation; up to 2^32 allowed, the next refused
my ($rc, $out, $err) = $node->psql('postgres', q{
	BEGIN READ ONLY;
	SELECT kms_encrypt('x', 'ro') IS NOT NULL;
	COMMIT;});
is($out, 't', 'read-only: the encryption that brings the count to 2^32 is allowed');
($rc, $out, $err) = $node->psql('postgres', q{
	\set VERBOSITY verbose
	BEGIN READ ONLY;
	SELECT kms_encrypt('x', 'ro');
	COMMIT;});
like($err, qr/ERROR:  55000: key "ro" version 1 has reached its limit of 4294967296 encryptions/,
	'read-only: the next one is refused with 55000 at the limit of 2^32');
is(current_version('ro'), '1', 'ro was not rotated (read-only)');

$node->stop;
done_testing();
