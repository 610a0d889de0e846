# pg_upgrade of a cluster that holds encrypted columns, a blind index and a
# rotated key, from an older major (PGCK_OLD_INSTALL: the directory holding its
# bin/, with pgcrypt_kms installed) to the major this test runs with (the
# PATH's binaries and PostgreSQL::Test modules, pgcrypt_kms installed).
#
# Needs two installations, so test/run.sh runs it only when test/matrix.sh
# (or .ci/run) asks for it with PGCK_UPGRADE_FROM_PG_CONFIG.
#
# No KMS call may be needed for the upgrade itself: the keys are local: keys
# and pg_upgrade runs with the local master key file moved away.  The
# provider creates that file on first use, so a file at that path after
# pg_upgrade means something used the provider; and a fresh session's decrypt
# at that point (the positive control) must fail.  Then the key file comes
# back, and every value must decrypt and the blind-index lookups must use the
# blind-index index.
use strict;
use warnings;
use File::Copy;
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $old_install = $ENV{PGCK_OLD_INSTALL} or die "PGCK_OLD_INSTALL is not set";
my $tmp = File::Spec->rel2abs(PostgreSQL::Test::Utils::tempdir);
my $keyfile = "$tmp/master.key";
my $keyaway = "$tmp/master.key.away";
my $rows = 3000;

my $old = PostgreSQL::Test::Cluster->new('old', install_path => $old_install);
my $new = PostgreSQL::Test::Cluster->new('new');
note('upgrading from ' . $old->pg_version . ' to ' . $new->pg_version);
ok($old->pg_version < $new->pg_version, 'the old cluster runs an older major (' . $old->pg_version . ' -> ' . $new->pg_version . ')');

# PostgreSQL 18's initdb turns data checksums on by default; pg_upgrade needs both the same
my @checksums = $new->pg_version >= 18 ? ('--no-data-checksums') : ();

# Control: pg_upgrade of a plain cluster (one table, no extension) between the
# same two installations.  Debian 12's 15.20 stamps every column with an
# attribute version (attoptions pg_attver=N, from a 2026 security release)
# that PostgreSQL 17.11 and 18.6, the sources at hand, do not know: their
# pg_restore then fails on any table.  That makes pg_upgrade impossible for
# every cluster, not just this extension's; the test then says so and skips
# (visibly), and any other failure of the control fails the test.
{
	my $pold = PostgreSQL::Test::Cluster->new('plain_old', install_path => $old_install);
	my $pnew = PostgreSQL::Test::Cluster->new('plain_new');
	$pold->init;
	$pnew->init(extra => \@checksums);
	$pold->start;
	$pold->safe_psql('postgres', 'CREATE TABLE t (a int); INSERT INTO t VALUES (42)');
	$pold->stop;
	chdir $tmp;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'pg_upgrade', '--no-sync',
			'-d', $pold->data_dir, '-D', $pnew->data_dir,
			'-b', "$old_install/bin", '-B', $pnew->config_data('--bindir'),
			'-s', $pnew->host, '-p', $pold->port, '-P', $pnew->port ], '>', \$out, '2>', \$err);
	if ($ok)
	{
		$pnew->start;
		is($pnew->safe_psql('postgres', 'SELECT a FROM t'), '42', 'control: pg_upgrade of a plain cluster works between these installations');
		$pnew->stop;
	}
	else
	{
		my $logs = join('', map { slurp_file($_) } glob($pnew->data_dir . '/pg_upgrade_output.d/*/log/*.log'));
		my $attver = $logs =~ /unrecognized parameter "pg_attver"/;
		ok($attver, 'control: pg_upgrade of a plain cluster fails, and only because the new major does not know the old one\'s attribute versions (pg_attver)')
		  or diag("pg_upgrade of a plain cluster failed:\n$out$err");
		SKIP:
		{
			skip('pg_upgrade ' . $old->pg_version . ' -> ' . $new->pg_version . ' is impossible for any cluster on this machine: '
				  . 'the old server stamps column attribute versions (pg_attver) that the new one rejects; a newer minor release of '
				  . $new->pg_version->major . ' is needed', 1);
		}
		done_testing();
		exit 0;
	}
}
$old->init;
$new->init(extra => \@checksums);
for my $node ($old, $new) {
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pgcrypt_kms'
pgcrypt_kms.local_key_file = '$keyfile'
});
}

$old->start;
$old->safe_psql('postgres', qq{
	CREATE EXTENSION pgcrypt_kms;
	SELECT kms_create_key('email', 'local:upgrade', blind_index => 'email');
	SELECT kms_create_key('account', 'local:upgrade');
	CREATE TABLE users (id int PRIMARY KEY, email enc_text NOT NULL, account enc_text);
	CREATE INDEX users_email_bidx ON users (kms_blind_index(email));
	INSERT INTO users
	SELECT g, kms_encrypt('UpUser' || g || '\@Example.com', 'email'),
	       kms_encrypt('UpAcct-' || g, 'account', 'users.account:' || g)
	  FROM generate_series(1, $rows / 2) g;
	SELECT kms_rotate_key('email');
	SELECT kms_rotate_key('account');
	INSERT INTO users
	SELECT g, kms_encrypt('UpUser' || g || '\@Example.com', 'email'),
	       kms_encrypt('UpAcct-' || g, 'account', 'users.account:' || g)
	  FROM generate_series($rows / 2 + 1, $rows) g;
});
ok(-f $keyfile, 'the local master key file exists on the old cluster');

my $checksum_sql = q{
	SELECT count(*) || ':' || md5(string_agg(kms_decrypt(email) || '|' ||
	       kms_decrypt(account, 'users.account:' || id), ',' ORDER BY id))
	  FROM users};
my $keyring_sql = q{
	SELECT string_agg(key_name || ' v' || version, ', ' ORDER BY key_name, version) FROM kms_keys};
my $expected = $old->safe_psql('postgres', $checksum_sql);
like($expected, qr/^$rows:/, 'the old cluster decrypts every row');
my $keyring = $old->safe_psql('postgres', $keyring_sql);
is($keyring, 'account v1, account v2, email v1, email v2', 'the old keyring holds two versions of each key');
my $versions = $old->safe_psql('postgres', q{
	SELECT count(DISTINCT kms_version_id(email)) FROM users});
is($versions, '2', 'the old table holds values under both versions of the rotated key');
my $extversion = $old->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'pgcrypt_kms'});
$old->stop;

# the upgrade, with no master key to hand
move($keyfile, $keyaway) or die "move: $!";
ok(!-e $keyfile, 'the local master key file is gone before pg_upgrade');
chdir $tmp;
command_ok([ 'pg_upgrade', '--no-sync',
		'-d', $old->data_dir, '-D', $new->data_dir,
		'-b', "$old_install/bin", '-B', $new->config_data('--bindir'),
		'-s', $new->host, '-p', $old->port, '-P', $new->port ],
	'pg_upgrade ' . $old->pg_version . ' -> ' . $new->pg_version . ' without the master key');
ok(!-e $keyfile, 'pg_upgrade never used the key provider (it creates the key file on first use)');

$new->start;
# positive control: a session that must unwrap a data key cannot, right now
my ($rc, $out, $err) = $new->psql('postgres', 'SELECT kms_decrypt(email) FROM users WHERE id = 1');
isnt($rc, 0, 'control: without the master key a fresh session cannot decrypt after the upgrade');
note("control error: $err");
unlink $keyfile;    # the provider made a new (wrong) master key on that attempt
copy($keyaway, $keyfile) or die "copy: $!";
chmod 0600, $keyfile;

is($new->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'pgcrypt_kms'}),
	$extversion, "the upgraded cluster has the extension at the old cluster's version ($extversion)");
is($new->safe_psql('postgres', $checksum_sql), $expected, 'every value decrypts to the original after pg_upgrade');
is($new->safe_psql('postgres', $keyring_sql), $keyring, 'the keyring is unchanged');
is($new->safe_psql('postgres', q{SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email_bidx'::regclass}),
	't', 'the blind-index index is valid');

# the blind-index lookups use their index (statistics are not carried over before 18: ANALYZE)
$new->safe_psql('postgres', 'ANALYZE users');
for my $id (7, $rows) {
	my $probe = "kms_blind_index('upuser$id\@example.com', 'email')";
	my $plan = $new->safe_psql('postgres', "EXPLAIN (COSTS OFF) SELECT id FROM users WHERE kms_blind_index(email) = $probe");
	like($plan, qr/(Index Scan|Index Only Scan|Bitmap Index Scan) (using|on) users_email_bidx/,
		"the blind-index lookup for row $id (key version " . ($id <= $rows / 2 ? 1 : 2) . ") uses users_email_bidx");
	is($new->safe_psql('postgres', "SELECT id FROM users WHERE kms_blind_index(email) = $probe"),
		"$id", "the blind-index lookup finds row $id");
}

# and the upgraded cluster keeps working: a new value under the current version
$new->safe_psql('postgres', q{INSERT INTO users VALUES (0, kms_encrypt('UpUser0@Example.com', 'email'), NULL)});
is($new->safe_psql('postgres', q{SELECT kms_decrypt(email) FROM users WHERE kms_blind_index(email) = kms_blind_index('upuser0@example.com', 'email')}),
	'UpUser0@Example.com', 'a value written after the upgrade decrypts and is found through the blind index');
$new->stop;

done_testing();
