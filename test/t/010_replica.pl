# Backups and replicas keep the cryptographic boundary: a streaming replica
# built with pg_basebackup decrypts every value with its own KMS access (its
# own copy of the local: master key file, named in its own postgresql.conf)
# and serves blind-index lookups; a rotation on the primary replicates and the
# standby's key cache follows it; a standby without the master key fails
# clearly (58000) but still serves lookups by carried tag; and no plaintext
# and no master key bytes are in the base backup, the data directories or
# the WAL (a plaintext control table proves that the grep finds what is there).
use strict;
use warnings;
use File::Copy;
use File::Find;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir;
mkdir "$tmp/$_" or die "mkdir $tmp/$_: $!" for qw(primary standby nokey);
my $keyfile = "$tmp/primary/master.key";
my $standby_keyfile = "$tmp/standby/master.key";
my $nokey_keyfile = "$tmp/nokey/master.key";    # does not exist: another key is made on first use

# Distinctive plaintexts.  The encrypted ones must never reach a file; the
# control one is stored as plain text on purpose.
my $mail_re = qr/repmarkmail/i;
my $acct_re = qr/repmarkacct/i;
my $ctrl_re = qr/RepCtrlPlain/;
my $nrows = 2000;

sub mail_of { my $g = shift; return "RepMarkMail$g\@Example.COM"; }
sub acct_of { my $g = shift; return sprintf('RepMarkAcct-%06d', $g); }

# What the tables must decrypt to, computed without any key.
sub expected_checksum
{
	my ($n) = @_;
	return qq{SELECT count(*) || ':' || md5(string_agg('RepMarkMail' || g || '\@Example.COM' || '|' ||
	                  'RepMarkAcct-' || lpad(g::text, 6, '0'), ',' ORDER BY g))
	            FROM generate_series(1, $n) g};
}
my $checksum_sql = q{
	SELECT count(*) || ':' || md5(string_agg(kms_decrypt(email) || '|' || coalesce(kms_decrypt(account), ''),
	       ',' ORDER BY id))
	  FROM users};

# ------------------------------------------------------------------ primary
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "pgcrypt_kms.local_key_file = '$keyfile'");
$primary->start;

$primary->safe_psql('postgres', qq{
	CREATE EXTENSION pgcrypt_kms;
	SELECT kms_create_key('email', 'local:replica', blind_index => 'email');
	SELECT kms_create_key('account', 'local:replica', blind_index => 'exact');
	CREATE TABLE users (id int PRIMARY KEY, email enc_text NOT NULL, account enc_text);
	CREATE INDEX users_email_bidx ON users (kms_blind_index(email));
	CREATE INDEX users_account_bidx ON users (kms_blind_index(account));
	INSERT INTO users
	SELECT g, kms_encrypt('RepMarkMail' || g || '\@Example.COM', 'email'),
	          kms_encrypt('RepMarkAcct-' || lpad(g::text, 6, '0'), 'account')
	  FROM generate_series(1, $nrows) g;
	-- positive control for the file grep: plain text, stored as is
	CREATE TABLE control_plain (id int, t text);
	INSERT INTO control_plain SELECT g, 'RepCtrlPlain-' || g FROM generate_series(1, 200) g;
	ANALYZE users;
});
ok(-f $keyfile, 'primary created its local master key file');
my $expected = $primary->safe_psql('postgres', expected_checksum($nrows));
is($primary->safe_psql('postgres', $checksum_sql), $expected, 'primary decrypts every value to its plaintext');
my $email_v1 = $primary->safe_psql('postgres',
	q{SELECT version_id FROM kms_keys WHERE key_name = 'email' AND version = 1});

# ------------------------------------------------------------------ base backup and standbys
$primary->backup('bk');
my $backup_path = $primary->backup_dir . '/bk';

my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
copy($keyfile, $standby_keyfile) or die "copy: $!";
chmod 0600, $standby_keyfile;
# its own KMS access: its own key file, in its own configuration (it would
# otherwise inherit the primary's setting from the copied postgresql.conf)
$standby->append_conf('postgresql.conf', "pgcrypt_kms.local_key_file = '$standby_keyfile'");
$standby->start;

my $nokey = PostgreSQL::Test::Cluster->new('standby_nokey');
$nokey->init_from_backup($primary, 'bk', has_streaming => 1);
$nokey->append_conf('postgresql.conf', "pgcrypt_kms.local_key_file = '$nokey_keyfile'");
$nokey->start;

$primary->wait_for_catchup($standby);
$primary->wait_for_catchup($nokey);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is a streaming replica');
is($standby->safe_psql('postgres', 'SHOW pgcrypt_kms.local_key_file'), $standby_keyfile,
	'standby uses its own copy of the master key file');

# ------------------------------------------------------------------ standby decrypts and looks up
is($standby->safe_psql('postgres', $checksum_sql), $expected,
	'standby decrypts every value to the same plaintext as the primary');

my $lookup_mail = lc(mail_of(42));    # the email transform folds case
my $plan = $standby->safe_psql('postgres', qq{
	EXPLAIN (COSTS OFF) SELECT id FROM users WHERE kms_blind_index(email) = kms_blind_index('$lookup_mail', 'email')});
like($plan, qr/Index (Only )?Scan using users_email_bidx|Bitmap Index Scan on users_email_bidx/,
	'standby plans the blind-index lookup as an index scan');
is($standby->safe_psql('postgres', qq{
	SELECT id || ' ' || kms_decrypt(email) FROM users
	 WHERE kms_blind_index(email) = kms_blind_index('  $lookup_mail ', 'email')}),
	'42 ' . mail_of(42), 'standby blind-index lookup (email transform) finds the row and decrypts it');
is($standby->safe_psql('postgres', q{
	SELECT string_agg(id::text, ',') FROM users
	 WHERE kms_blind_index(account) = kms_blind_index('} . acct_of(1234) . q{', 'account')}),
	'1234', 'standby blind-index lookup (exact transform) finds the row');
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM users
	 WHERE kms_blind_index(account) = kms_blind_index('} . lc(acct_of(1234)) . q{', 'account')}),
	'0', 'exact transform: another case finds nothing (the lookup is not vacuous)');

# ------------------------------------------------------------------ rotation replicates
# A session that stays open across the rotation: its key cache holds the
# first version and must follow the keyring change replayed from the primary.
my $sb = $standby->background_psql('postgres');
my ($ret0, $out0, $err0);
is($sb->query_safe($checksum_sql), $expected, 'long-lived standby session decrypts everything');
is($sb->query_safe(q{SELECT count(*) FROM users WHERE kms_version_id(email) = }
	  . $email_v1 . q{ AND kms_decrypt(email) LIKE 'RepMarkMail%'}), $nrows,
	'standby session: every value is under version 1 and decrypts before the rotation');
($ret0, $out0, $err0) = $standby->psql('postgres', q{SELECT kms_encrypt('probe', 'email')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err0, qr/ERROR:\s+55000: cannot encrypt during recovery/,
	'a standby does not encrypt (its counts would never reach the primary): 55000');
my $stats = $sb->query_safe(q{SELECT unwraps > 0 AND hits > 0 AND cached_versions >= 2 FROM kms_cache_stats()});
is($stats, 't', 'standby session unwrapped the keys with its own KMS access and caches them');

is($primary->safe_psql('postgres', q{SELECT kms_rotate_key('email')}), '2', 'rotate email on the primary');
my $email_v2 = $primary->safe_psql('postgres',
	q{SELECT version_id FROM kms_keys WHERE key_name = 'email' AND current});
isnt($email_v2, $email_v1, 'a new version id is current on the primary');
my $n2 = $nrows + 100;
$primary->safe_psql('postgres', qq{
	INSERT INTO users
	SELECT g, kms_encrypt('RepMarkMail' || g || '\@Example.COM', 'email'),
	          kms_encrypt('RepMarkAcct-' || lpad(g::text, 6, '0'), 'account')
	  FROM generate_series($nrows + 1, $n2) g;
	ANALYZE users;
});
my $expected2 = $primary->safe_psql('postgres', expected_checksum($n2));
$primary->wait_for_catchup($standby);
$primary->wait_for_catchup($nokey);

is($standby->safe_psql('postgres', q{
	SELECT string_agg(version || ':' || state, ',' ORDER BY version) FROM kms_keys WHERE key_name = 'email'}),
	'1:decrypt-only,2:active', 'the rotation replicated to the standby keyring');
is($sb->query_safe(qq{SELECT count(*) FROM users WHERE id > $nrows AND kms_decrypt(email) LIKE 'RepMarkMail%'}), '100',
	'the same standby session decrypts the values written under the new version');
is($sb->query_safe(qq{SELECT count(*) FROM users WHERE id > $nrows AND kms_version_id(email) = $email_v2}),
	'100', 'rows written after the rotation carry the new version');
is($sb->query_safe($checksum_sql), $expected2,
	'the same standby session decrypts old and new values');
is($standby->safe_psql('postgres', $checksum_sql), $expected2, 'a new standby session decrypts old and new values');
is($sb->query_safe(q{SELECT id FROM users WHERE kms_blind_index(email) = kms_blind_index('}
	  . lc(mail_of($n2)) . q{', 'email')}), $n2, 'a value written after the rotation is found by blind index');
$sb->quit;

# ------------------------------------------------------------------ standby without the master key
is($nokey->safe_psql('postgres', 'SELECT count(*) FROM users'), $n2, 'keyless standby replicates the rows');
my ($ret, $stdout, $stderr) = $nokey->psql('postgres', 'SELECT kms_decrypt(email) FROM users WHERE id = 1',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'keyless standby cannot decrypt');
like($stderr, qr/ERROR:\s+58000/, 'it fails with SQLSTATE 58000');
like($stderr, qr/could not unwrap a data key with local key "replica"/, 'naming the key that does not unwrap');
unlike($stderr, $mail_re, 'and no plaintext in the error');
($ret, $stdout, $stderr) = $nokey->psql('postgres', q{SELECT kms_blind_index('x@example.com', 'email')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:\s+58000/, 'keyless standby cannot compute a probe either (58000)');

# the probe, computed by a client that has the key, serves on the keyless standby
my $probe = $primary->safe_psql('postgres', qq{SELECT kms_blind_index('$lookup_mail', 'email')});
like($probe, qr/^\\x[0-9a-f]{64}$/, 'probe computed where the key is');
$plan = $nokey->safe_psql('postgres', qq{
	EXPLAIN (COSTS OFF) SELECT id FROM users WHERE kms_blind_index(email) = '$probe'::bytea});
like($plan, qr/Index (Only )?Scan using users_email_bidx|Bitmap Index Scan on users_email_bidx/,
	'keyless standby plans the carried-tag lookup as an index scan');
is($nokey->safe_psql('postgres', qq{SELECT id FROM users WHERE kms_blind_index(email) = '$probe'::bytea}),
	'42', 'keyless standby serves the lookup by carried tag');
is($nokey->safe_psql('postgres', q{
	SELECT string_agg(id::text, ',') FROM users
	 WHERE kms_blind_index(account) = (SELECT kms_blind_index(account) FROM users WHERE id = 7)}),
	'7', 'keyless standby: lookup by another row\'s carried tag');
ok(-f $nokey_keyfile && slurp_file($nokey_keyfile) ne slurp_file($keyfile),
	'the keyless standby has a different master key (made on first use)');

# ------------------------------------------------------------------ no plaintext on disk
# more control rows now, so their WAL is in a segment no checkpoint removes
$primary->safe_psql('postgres', q{INSERT INTO control_plain SELECT g, 'RepCtrlPlain-' || g FROM generate_series(201, 400) g});
$primary->safe_psql('postgres', 'CHECKPOINT');
$primary->wait_for_catchup($standby);
$primary->wait_for_catchup($nokey);
$standby->safe_psql('postgres', 'CHECKPOINT');    # a restartpoint: flush the standby's pages too
$nokey->safe_psql('postgres', 'CHECKPOINT');

my $master = slurp_binary($keyfile);
is(length($master), 32, 'master key is 32 bytes');
my $master_hex = unpack('H*', $master);

# Every file under a directory, read whole; returns { name => [files that match] }.
sub scan_dir
{
	my ($dir, %pat) = @_;
	my %hits = map { $_ => [] } keys %pat;
	my $files = 0;
	find(
		{
			no_chdir => 1,
			wanted => sub {
				my $f = $File::Find::name;
				return unless -f $f;
				my $content = slurp_binary($f, 1);
				return unless defined $content;    # vanished while we looked
				$files++;
				for my $name (keys %pat)
				{
					my $p = $pat{$name};
					my $hit = ref $p ? $content =~ $p : index($content, $p) >= 0;
					push @{ $hits{$name} }, $f if $hit;
				}
			}
		},
		$dir);
	return ($files, \%hits);
}

sub slurp_binary
{
	my ($f, $may_vanish) = @_;
	my $fh;
	unless (open($fh, '<:raw', $f))
	{
		return undef if $may_vanish && $!{ENOENT};
		die "open $f: $!";
	}
	local $/;
	my $c = <$fh>;
	close $fh;
	return $c // '';
}

my %patterns = (
	mail => $mail_re,
	acct => $acct_re,
	control => $ctrl_re,
	master => $master,
	master_hex => qr/\Q$master_hex\E/i);
for my $target (
	[ 'primary data directory', $primary->data_dir ],
	[ 'base backup', $backup_path ],
	[ 'standby data directory', $standby->data_dir ],
	[ 'keyless standby data directory', $nokey->data_dir ])
{
	my ($what, $dir) = @$target;
	my ($files, $hits) = scan_dir($dir, %patterns);
	cmp_ok($files, '>', 100, "$what: scanned $files files");
	is_deeply($hits->{mail}, [], "$what: no plaintext email in any file");
	is_deeply($hits->{acct}, [], "$what: no plaintext account in any file");
	is_deeply([ @{ $hits->{master} }, @{ $hits->{master_hex} } ], [], "$what: no master key bytes in any file");
	my @ctrl = @{ $hits->{control} };
	ok(scalar(grep { m{/base/\d+/\d+$} } @ctrl), "$what: control: the grep finds plain text in a heap file")
	  or diag explain \@ctrl;
	if ($dir eq $primary->data_dir)
	{
		ok(scalar(grep { m{/pg_wal/[0-9A-F]{24}$} } @ctrl), "$what: control: the grep finds plain text in the WAL")
		  or diag explain \@ctrl;
	}
}

# ------------------------------------------------------------------ the standby's shared key cache
# A destroy replays on the standby by WAL, where no callback of the extension
# runs at commit: a standby backend that was connected when it was replayed
# wipes its database's shared entries at its next keyring read, so the
# destroyed key's bytes do not stay in the shared region until cache_ttl.
$standby->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pgcrypt_kms'
pgcrypt_kms.shared_cache_size = 16
});
$standby->restart;
my $sc = $standby->background_psql('postgres');
is($sc->query_safe(q{SELECT count(kms_decrypt(account)) FILTER (WHERE kms_decrypt(account) LIKE 'RepMarkAcct%')
	  FROM users WHERE id <= 10}), '10', 'standby with the shared cache decrypts the account values');
my $before = $sc->query_safe(q{SELECT enabled || ':' || cached || ':' || invalidated FROM kms_shared_cache_stats()});
like($before, qr/^true:[1-9]\d*:0$/, "the standby's shared cache holds the account key ($before)");
$primary->safe_psql('postgres', q{SELECT kms_destroy_key('account', 'account')});
$primary->wait_for_catchup($standby);
# the next statement that reads the keyring (a decrypt under another key)
is($sc->query_safe(q{SELECT kms_decrypt(email) FROM users WHERE id = 1}), mail_of(1),
	'after the replayed destroy the same session still decrypts under another key');
my $after = $sc->query_safe(q{SELECT invalidated FROM kms_shared_cache_stats()});
cmp_ok($after, '>', 0, "the replayed destroy wiped the shared entries of the database (invalidated $after)");
($ret, $stdout, $stderr) = $standby->psql('postgres', 'SELECT kms_decrypt(account) FROM users WHERE id = 1',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:\s+42704/, 'a new standby session: the destroyed key is refused (42704)');
$sc->quit;

# ... and a key used before a replayed destroy that no session connected at the replay reads
# again expires at cache_ttl: a standby's refresher refreshes nothing (the outside review of
# 2026-12-05 saw it unwrap a destroyed key again, keeping its raw bytes for another TTL)
$standby->append_conf('postgresql.conf', 'pgcrypt_kms.cache_ttl = 6');
$standby->reload;
$primary->safe_psql('postgres', q{SELECT kms_create_key('shred2', 'local:replica');
	CREATE TABLE t_shred2 AS SELECT kms_encrypt('RepMark' || 'Shred2', 'shred2') AS v});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT kms_decrypt(v) = 'RepMark' || 'Shred2' FROM t_shred2}), 't',
	'a standby session decrypts under a new key (published in the shared cache), and ends');
my $stats = q{SELECT refreshes || ':' || expirations || ':' || cached FROM kms_shared_cache_stats()};
my ($ref0, $exp0) = split /:/, $standby->safe_psql('postgres', $stats);
$primary->safe_psql('postgres', q{SELECT kms_destroy_key('shred2', 'shred2')});
$primary->wait_for_catchup($standby);
sleep 8;    # past the refresh margin (2 s before the 6 s TTL) and the TTL
my ($ref1, $exp1, $cached1) = split /:/, $standby->safe_psql('postgres', $stats);
is($ref1, $ref0, "the standby refreshed nothing ($ref0 -> $ref1 refreshes)");
cmp_ok($exp1, '>', $exp0, "the destroyed key's entry expired at cache_ttl ($exp0 -> $exp1 expirations, $cached1 cached)");

$standby->stop;
$nokey->stop;
$primary->stop;
done_testing();
