# Concurrency: 8 pgbench sessions for 60 s (PGCK_CONCURRENCY_SECONDS) insert,
# update (re-encrypt to a new plaintext), look up by blind index, decrypt
# ranges, re-encrypt ranges onto the current versions and rotate the keys,
# each write keeping a plaintext shadow table in the same transaction.  The
# scripts check themselves (a lookup or a range that does not decrypt to the
# shadow raises PK001 / PK002 and aborts the client).  Afterwards pgbench
# reports no failed transaction and no aborted client (pgbench 15 counts an
# aborted client in neither, so its exit status and its stderr are what
# prove it: both are checked), the server logged no ERROR,
# and the row count and the checksum of the decrypted values match the
# shadow exactly.  Negative controls prove that the checks catch a mismatch.
use strict;
use warnings;
use File::Basename;
use Cwd qw(abs_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $seconds = $ENV{PGCK_CONCURRENCY_SECONDS} || 60;
my $clients = 8;
my $preload = 5000;
my $scripts = abs_path(dirname(__FILE__)) . '/pgbench';
# weights: mostly reads, rotation rare
my @mix = (
	[ 'insert', 200 ], [ 'update', 200 ], [ 'lookup', 300 ],
	[ 'scan', 100 ], [ 'reencrypt', 100 ], [ 'rotate', 1 ]);

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $node = PostgreSQL::Test::Cluster->new('concurrency');
$node->init;
$node->append_conf('postgresql.conf', qq{
pgcrypt_kms.local_key_file = '$tmp/master.key'
max_connections = 30
shared_buffers = 64MB
});
$node->start;

$node->safe_psql('postgres', qq{
	CREATE EXTENSION pgcrypt_kms;
	SELECT kms_create_key('email', 'local:bench', blind_index => 'email');
	SELECT kms_create_key('account', 'local:bench', blind_index => 'exact');
	CREATE SEQUENCE secret_ids;
	CREATE TABLE shadow (id bigint PRIMARY KEY, email text NOT NULL, account text NOT NULL);
	CREATE TABLE secrets (id bigint PRIMARY KEY, email enc_text NOT NULL, account enc_text NOT NULL);
	CREATE INDEX secrets_email_bidx ON secrets (kms_blind_index(email));
	CREATE INDEX secrets_account_bidx ON secrets (kms_blind_index(account));
	INSERT INTO shadow SELECT nextval('secret_ids'), 'Pre' || g || '\@Example.net', 'ACP-' || g
	  FROM generate_series(1, $preload) g;
	INSERT INTO secrets SELECT id, kms_encrypt(email, 'email'), kms_encrypt(account, 'account') FROM shadow;
	ANALYZE shadow, secrets;
});

# The checks the scripts run.  STABLE: every query in them sees the calling
# statement's snapshot, so shadow and secrets are compared as of one instant.
$node->safe_psql('postgres', q{
	CREATE FUNCTION check_lookup(p_id bigint) RETURNS int LANGUAGE plpgsql STABLE AS $$
	DECLARE
		sh shadow;
		n int;
		self_found bool;
		bad int;
	BEGIN
		SELECT * INTO sh FROM shadow WHERE id = p_id;
		IF NOT FOUND THEN
			RETURN 0;    -- an id whose insert is not committed (yet)
		END IF;
		-- the email transform ignores case and surrounding blanks
		SELECT count(*), coalesce(bool_or(s.id = p_id), false),
		       count(*) FILTER (WHERE lower(kms_decrypt(s.email)) IS DISTINCT FROM lower(sh.email)
		                           OR kms_decrypt(s.email) IS DISTINCT FROM (SELECT email FROM shadow h WHERE h.id = s.id))
		  INTO n, self_found, bad
		  FROM secrets s
		 WHERE kms_blind_index(s.email) = kms_blind_index('  ' || upper(sh.email) || ' ', 'email');
		IF NOT self_found OR bad > 0 THEN
			RAISE EXCEPTION 'email blind-index lookup of id % is wrong: % rows, self found %, % mismatches',
				p_id, n, self_found, bad USING ERRCODE = 'PK001';
		END IF;
		SELECT count(*), coalesce(bool_or(s.id = p_id), false),
		       count(*) FILTER (WHERE kms_decrypt(s.account) IS DISTINCT FROM sh.account
		                           OR kms_decrypt(s.account) IS DISTINCT FROM (SELECT account FROM shadow h WHERE h.id = s.id))
		  INTO n, self_found, bad
		  FROM secrets s
		 WHERE kms_blind_index(s.account) = kms_blind_index(sh.account, 'account');
		IF NOT self_found OR bad > 0 THEN
			RAISE EXCEPTION 'account blind-index lookup of id % is wrong: % rows, self found %, % mismatches',
				p_id, n, self_found, bad USING ERRCODE = 'PK001';
		END IF;
		RETURN n;
	END
	$$;

	CREATE FUNCTION check_range(lo bigint, n int) RETURNS int LANGUAGE plpgsql STABLE AS $$
	DECLARE
		cnt int;
		bad int;
	BEGIN
		SELECT count(*),
		       count(*) FILTER (WHERE t.id IS NULL OR s.id IS NULL
		                           OR kms_decrypt(t.email) IS DISTINCT FROM s.email
		                           OR kms_decrypt(t.account) IS DISTINCT FROM s.account)
		  INTO cnt, bad
		  FROM (SELECT * FROM secrets WHERE id BETWEEN lo AND lo + n - 1) t
		  FULL JOIN (SELECT * FROM shadow WHERE id BETWEEN lo AND lo + n - 1) s ON s.id = t.id;
		IF bad > 0 THEN
			RAISE EXCEPTION 'range % .. % does not decrypt to the shadow: % of % rows differ',
				lo, lo + n - 1, bad, cnt USING ERRCODE = 'PK002';
		END IF;
		RETURN cnt;
	END
	$$;
});

my $final_check = q{
	SELECT (SELECT count(*) FROM secrets) || ':' ||
	       (SELECT md5(string_agg(id || '|' || kms_decrypt(email) || '|' || kms_decrypt(account), ',' ORDER BY id)) FROM secrets)};
my $shadow_check = q{
	SELECT (SELECT count(*) FROM shadow) || ':' ||
	       (SELECT md5(string_agg(id || '|' || email || '|' || account, ',' ORDER BY id)) FROM shadow)};
is($node->safe_psql('postgres', $final_check), $node->safe_psql('postgres', $shadow_check),
	'before the run: secrets decrypt to the shadow');

sub run_pgbench
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	my @cmd = ('pgbench', '-h', $node->host, '-p', $node->port, @args, 'postgres');
	note "running: @cmd";
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err,
		IPC::Run::timeout($seconds + $PostgreSQL::Test::Utils::timeout_default));
	my $rc = $? >> 8;
	note "pgbench exit $rc\nstdout:\n$out\nstderr:\n$err";
	return ($rc, $out, $err);
}

# ------------------------------------------------------------------ the run
my $log_offset = -s $node->logfile;
my ($rc, $out, $err) = run_pgbench('-n', '-c', $clients, '-j', 2, '-T', $seconds,
	map { ('-f', "$scripts/012_$_->[0].sql\@$_->[1]") } @mix);
my $log = substr(slurp_file($node->logfile), $log_offset);

is($rc, 0, "pgbench ($clients clients, $seconds s) exits 0: no client aborted");
like($out, qr/number of clients: $clients\b/, "$clients clients ran");
like($out, qr/number of failed transactions: 0 \(/, 'pgbench reports no failed transaction');
unlike($err, qr/ERROR|abort|error/i, 'pgbench printed no error');
my ($total) = $out =~ /number of transactions actually processed: (\d+)/;
cmp_ok($total // 0, '>', 0, 'transactions processed: ' . ($total // 'none'));
for my $s (@mix)
{
	my ($n) = $out =~ /SQL script \d+: \S*012_$s->[0]\.sql\s*\n\s*- weight: \d+ \([^)]*\)\s*\n\s*- (\d+) transactions/;
	cmp_ok($n // 0, '>', 0, "script $s->[0] ran " . ($n // 0) . ' times');
}
my @errors = grep { /\b(ERROR|FATAL|PANIC):/ } split /\n/, $log;
is(scalar(@errors), 0, 'the server logged no ERROR during the run') or diag join("\n", @errors[0 .. ($#errors < 9 ? $#errors : 9)]);
like($log, qr/check_lookup/, 'the server log covers the run (statements are logged)');

# ------------------------------------------------------------------ afterwards
my $shadow = $node->safe_psql('postgres', $shadow_check);
my ($nrows) = $shadow =~ /^(\d+):/;
cmp_ok($nrows, '>', $preload, "rows were inserted ($nrows rows)");
is($node->safe_psql('postgres', $final_check), $shadow, 'row count and decrypted checksum match the shadow exactly');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM secrets t FULL JOIN shadow s USING (id)
	 WHERE t.id IS NULL OR s.id IS NULL
	    OR kms_blind_index(t.email) IS DISTINCT FROM kms_blind_index(s.email, 'email')
	    OR kms_blind_index(t.account) IS DISTINCT FROM kms_blind_index(s.account, 'account')}),
	'0', 'every carried blind-index tag equals the probe of its shadow value');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM shadow WHERE email LIKE 'Upd%'}), '>', 0,
	'rows were updated');
my ($email_versions, $account_versions) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE key_name = 'email'), count(*) FILTER (WHERE key_name = 'account') FROM kms_keys});
cmp_ok($email_versions + $account_versions, '>', 3, "the keys were rotated ($email_versions email, $account_versions account versions)");
cmp_ok($node->safe_psql('postgres', q{SELECT count(DISTINCT kms_version_id(email)) FROM secrets}), '>', 1,
	'the values span several email versions');
cmp_ok($node->safe_psql('postgres', q{
	SELECT count(*) FROM secrets WHERE id <= } . $preload . q{ AND kms_version_id(email) <> (SELECT version_id FROM kms_keys WHERE key_name = 'email' AND version = 1)}),
	'>', 0, 'preloaded values were re-encrypted onto newer versions');
is($node->safe_psql('postgres', q{
	SELECT string_agg(key_name || '=' || n, ',' ORDER BY key_name)
	  FROM (SELECT key_name, count(*) FILTER (WHERE current) n FROM kms_keys GROUP BY key_name) k}),
	'account=1,email=1', 'exactly one active version per key');
is($node->safe_psql('postgres', q{
	SELECT bool_and(vs = ARRAY(SELECT generate_series(1, cardinality(vs))))
	  FROM (SELECT array_agg(version ORDER BY version) vs FROM kms_keys GROUP BY key_name) k}),
	't', 'versions numbered 1..n: concurrent rotations serialized');
my $plan = $node->safe_psql('postgres', q{
	EXPLAIN (COSTS OFF) SELECT id FROM secrets WHERE kms_blind_index(email) = kms_blind_index('pre42@example.net', 'email')});
like($plan, qr/Index Scan using secrets_email_bidx|Bitmap Index Scan on secrets_email_bidx/, 'lookups use the blind index');

# re-encrypt the whole table onto the current versions with the procedure
$node->safe_psql('postgres', q{CALL kms_reencrypt_table('secrets', 'email', 1000)});
$node->safe_psql('postgres', q{CALL kms_reencrypt_table('secrets', 'account', 1000)});
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM secrets
	 WHERE kms_version_id(email) <> (SELECT version_id FROM kms_keys WHERE key_name = 'email' AND current)
	    OR kms_version_id(account) <> (SELECT version_id FROM kms_keys WHERE key_name = 'account' AND current)}),
	'0', 'kms_reencrypt_table moved every value onto the current versions');
is($node->safe_psql('postgres', $final_check), $shadow, 'and they still decrypt to the shadow');

# ------------------------------------------------------------------ negative controls
# the scripts' checks and the final comparison do catch a mismatch
my $bad = "$tmp/sabotage_lookup.sql";
append_to_file($bad, qq{UPDATE shadow SET email = 'Sabotage1\@Example.com' WHERE id = 1;\nSELECT check_lookup(1);\n});
($rc, $out, $err) = run_pgbench('-n', '-c', 1, '-t', 1, '-f', $bad);
isnt($rc, 0, 'control: pgbench fails when a lookup does not match the shadow');
like($err, qr/email blind-index lookup of id 1 is wrong/, 'control: check_lookup raised');
$bad = "$tmp/sabotage_range.sql";
append_to_file($bad, qq{UPDATE shadow SET account = 'Sabotage2' WHERE id = 2;\nSELECT check_range(1, 10);\n});
($rc, $out, $err) = run_pgbench('-n', '-c', 1, '-t', 1, '-f', $bad);
isnt($rc, 0, 'control: pgbench fails when a range does not decrypt to the shadow');
like($err, qr/range 1 \.\. 10 does not decrypt to the shadow: 2 of 10 rows differ/, 'control: check_range raised');
isnt($node->safe_psql('postgres', $final_check), $node->safe_psql('postgres', $shadow_check),
	'control: the final checksum comparison sees the difference');

$node->stop;
done_testing();
