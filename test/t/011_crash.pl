# Crash: the server is killed with SIGKILL in the middle of bulk encrypted
# inserts and a concurrent key rotation; after restart (crash recovery) every
# committed row decrypts to its plaintext, no row of an uncommitted batch is
# there, and the keyring is consistent: every committed row's key version
# exists, exactly one version per key is active, versions are numbered 1..n
# exactly as the committed rotations say (the rotation in flight left
# nothing), and encryption and rotation work again.
#
# Killing only the postmaster is not a crash of the server: busy backends
# keep running (and writing WAL) until their next wait.  So the whole
# process tree is frozen (SIGSTOP, postmaster first, so it cannot fork or
# react) and then SIGKILLed, like a power cut without the page-cache loss
# (the test clusters run with fsync = off, which that loss would need).
#
# Two loaders commit batches of encrypted rows; the rotator rotates a key
# once per transaction.  Loader B and the rotator pass through advisory-lock
# gates: once the loops have run freely for a while, the test closes the
# gates, so that at the kill loader B deterministically holds half a batch
# and the rotator a new key version, both uncommitted, while loader A is
# still encrypting and inserting freely.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $keyfile = "$tmp/master.key";
my $per = 400;    # rows per batch

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
pgcrypt_kms.local_key_file = '$keyfile'
autovacuum = off
max_parallel_workers_per_gather = 0
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pgcrypt_kms;
	CREATE EXTENSION amcheck;
	SELECT kms_create_key('bulk', 'local:crash', blind_index => 'exact');
	SELECT kms_create_key('acct', 'local:crash', blind_index => 'digits');
	CREATE TABLE crash_rows (id bigint PRIMARY KEY, loader text NOT NULL, batch int NOT NULL,
	                         val enc_text NOT NULL, acct enc_text NOT NULL);
	CREATE INDEX crash_rows_bidx ON crash_rows (kms_blind_index(val));
	CREATE TABLE batches_done (loader text, batch int, first_id bigint NOT NULL, nrows int NOT NULL,
	                           PRIMARY KEY (loader, batch));
	CREATE TABLE rotations_done (version int PRIMARY KEY);

	-- the plaintext of a row follows from its id (lengths vary, one in 13 is empty)
	CREATE FUNCTION expected_val(id bigint) RETURNS text IMMUTABLE LANGUAGE sql AS $$
		SELECT CASE WHEN id % 13 = 0 THEN ''
		            ELSE 'crash-' || id || '-' || md5(id::text) || repeat('x', (id % 97)::int) END
	$$;

	CREATE PROCEDURE bulk_load(who text, base bigint, per int, gated bool) LANGUAGE plpgsql AS $$
	DECLARE
		first bigint;
		half int := per / 2;
	BEGIN
		FOR b IN 1..1000000 LOOP
			first := base + (b - 1)::bigint * per;
			INSERT INTO crash_rows
			SELECT i, who, b, kms_encrypt(expected_val(i), 'bulk'), kms_encrypt('ACC ' || i, 'acct')
			  FROM generate_series(first, first + half - 1) i;
			IF gated THEN
				RAISE NOTICE 'loader % batch % half inserted', who, b;
				PERFORM pg_advisory_lock_shared(43);
				PERFORM pg_advisory_unlock_shared(43);
			END IF;
			INSERT INTO crash_rows
			SELECT i, who, b, kms_encrypt(expected_val(i), 'bulk'), kms_encrypt('ACC ' || i, 'acct')
			  FROM generate_series(first + half, first + per - 1) i;
			INSERT INTO batches_done VALUES (who, b, first, per);
			COMMIT;
		END LOOP;
	END
	$$;

	CREATE PROCEDURE rotate_loop() LANGUAGE plpgsql AS $$
	DECLARE
		v int;
	BEGIN
		FOR i IN 1..1000000 LOOP
			v := kms_rotate_key('bulk');
			INSERT INTO rotations_done VALUES (v);
			RAISE NOTICE 'rotation to version % not committed yet', v;
			PERFORM pg_advisory_lock_shared(42);
			PERFORM pg_advisory_unlock_shared(42);
			PERFORM pg_sleep(0.01);
			COMMIT;
		END LOOP;
	END
	$$;
});

# the long-running sessions, as plain psql processes
my %run;
sub start_psql
{
	my ($name, $sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') . " application_name=$name",
		  '-c', $sql ],
		'>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$run{$name} = { h => $h, out => \$out, err => \$err };
	return;
}
start_psql('loader_a', q{CALL bulk_load('A', 1, } . $per . q{, false)});
start_psql('loader_b', q{CALL bulk_load('B', 1000000000, } . $per . q{, true)});
start_psql('rotator', q{CALL rotate_loop()});

# Wait until $sql returns true while all three sessions keep running; if one
# of them ends (an error), say why and stop: nothing after this makes sense.
sub wait_running
{
	my ($what, $sql) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		$_->{h}->pump_nb for grep { $_->{h}->pumpable } values %run;
		my @ended = grep { !$run{$_}{h}->pumpable } sort keys %run;
		if (@ended)
		{
			fail($what);
			diag "session $_ ended early: " . ${ $run{$_}{err} } for @ended;
			$node->stop('immediate');
			done_testing();
			exit 1;
		}
		return pass($what) if $node->safe_psql('postgres', $sql) eq 't';
		if (time() > $deadline)
		{
			fail("$what (timed out)");
			return 0;
		}
		usleep(50_000);
	}
}

# let them commit a good number of batches and rotations
wait_running('loaders commit encrypted batches while the key rotates', q{
	SELECT (SELECT count(*) FROM batches_done WHERE loader = 'A') >= 8
	   AND (SELECT count(*) FROM batches_done WHERE loader = 'B') >= 8
	   AND (SELECT count(*) FROM rotations_done) >= 15});

# close the gates: loader B stops halfway through a batch, the rotator before
# committing a rotation; loader A keeps going
my $gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(42), pg_advisory_lock(43)');
wait_running('loader B (half a batch) and the rotator (a new version) wait uncommitted at their gates', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE application_name IN ('loader_b', 'rotator') AND wait_event = 'advisory'});
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE application_name IN ('loader_a', 'loader_b', 'rotator') AND state = 'active' AND query LIKE 'CALL %'}),
	'3', 'all three are inside their CALL');
my $a_before = $node->safe_psql('postgres', q{SELECT count(*) FROM batches_done WHERE loader = 'A'});
wait_running('loader A is still committing batches while the others wait',
	qq{SELECT count(*) >= $a_before + 2 FROM batches_done WHERE loader = 'A'});

# ------------------------------------------------------------------ the crash
sub proc_state
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return undef;
	my $s = <$fh>;
	close $fh;
	return undef unless defined $s && $s =~ /^\d+ \(.*\) (\S) (\d+)/s;
	return ($1, $2);
}

sub children_of
{
	my ($ppid) = @_;
	opendir(my $d, '/proc') or die "opendir /proc: $!";
	my @kids;
	for my $p (grep { /^\d+$/ } readdir $d)
	{
		my ($state, $parent) = proc_state($p);
		push @kids, $p if defined $parent && $parent == $ppid;
	}
	closedir $d;
	return @kids;
}

my @session_pids = split /,/, $node->safe_psql('postgres', q{
	SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
	 WHERE application_name IN ('loader_a', 'loader_b', 'rotator')});
my $pm = $node->{_pid};
ok(defined $pm && kill(0, $pm), 'postmaster is running');
kill 'STOP', $pm;    # first: it can no longer fork or react to its children
my @children = children_of($pm);
kill 'STOP', @children;
my %is_child = map { $_ => 1 } @children;
is(scalar(grep { $is_child{$_} } @session_pids), 3,
	'froze the postmaster and its ' . scalar(@children) . ' processes, the three sessions\' backends among them');
$node->kill9;    # SIGKILL the postmaster
kill 'KILL', @children;

# wait until every process of the old server is gone (not even a zombie: a
# zombie postmaster would look alive to the next postmaster's lock file check)
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while (grep { defined((proc_state($_))[0]) } ($pm, @children))
{
	last if time() > $deadline;
	usleep(100_000);
}
my @left = grep { defined((proc_state($_))[0]) } ($pm, @children);
if (@left && !grep { (proc_state($_))[0] ne 'Z' } @left)
{
	# only unreaped zombies (an init that reaps slowly): they hold nothing,
	# but the lock file would name a pid that still answers kill(0)
	diag "unreaped zombies @left; removing the stale postmaster.pid";
	unlink($node->data_dir . '/postmaster.pid');
	@left = ();
}
is_deeply(\@left, [], 'every server process is dead');

# the sessions lost their server while running
my $rot_err;
my $b_err;
for my $name (sort keys %run)
{
	my $r = $run{$name};
	eval { $r->{h}->finish; };
	like(${ $r->{err} }, qr/server closed the connection|connection to server .* lost|terminated abnormally/i,
		"$name was killed while running");
}
eval { $gate->{run}->kill_kill; };
my ($inflight_version) = ${ $run{rotator}{err} } =~ /.*rotation to version (\d+) not committed yet/s;
my ($inflight_batch) = ${ $run{loader_b}{err} } =~ /.*loader B batch (\d+) half inserted/s;
ok(defined $inflight_version, "the rotation in flight was to version " . ($inflight_version // '?'));
ok(defined $inflight_batch, "loader B's batch in flight was batch " . ($inflight_batch // '?'));
$inflight_version //= -1;
$inflight_batch //= -1;

# ------------------------------------------------------------------ restart
my $log_offset = -s $node->logfile;
$node->start;
ok($node->log_contains('database system was interrupted|not properly shut down', $log_offset),
	'the restart ran crash recovery');

my ($rows, $committed) = split /\|/, $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM crash_rows), (SELECT sum(nrows) FROM batches_done)});
cmp_ok($rows, '>', 16 * $per, "$rows rows survived");
is($rows, $committed, 'exactly the rows of committed batches are there');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM batches_done b
	 WHERE (SELECT count(*) FROM crash_rows r WHERE r.loader = b.loader AND r.batch = b.batch
	          AND r.id BETWEEN b.first_id AND b.first_id + b.nrows - 1) <> b.nrows}),
	'0', 'every committed batch is complete');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM crash_rows WHERE loader = 'B' AND batch >= $inflight_batch}),
	'0', "no row of loader B's uncommitted half batch");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM crash_rows r
	 WHERE NOT EXISTS (SELECT 1 FROM batches_done b WHERE b.loader = r.loader AND b.batch = r.batch)}),
	'0', 'no row of any uncommitted batch');

# every committed row decrypts to its plaintext
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE kms_decrypt(val) IS DISTINCT FROM expected_val(id)
	                           OR kms_decrypt(acct) IS DISTINCT FROM 'ACC ' || id) FROM crash_rows}),
	'0', 'every committed row decrypts to its expected plaintext');
is($node->safe_psql('postgres', q{
	SELECT md5(string_agg(kms_decrypt(val) || '/' || kms_decrypt(acct), ',' ORDER BY id)) =
	       md5(string_agg(expected_val(id) || '/' || 'ACC ' || id, ',' ORDER BY id)) FROM crash_rows}),
	't', 'and the checksums agree');

# the keyring
cmp_ok($node->safe_psql('postgres', q{SELECT count(DISTINCT kms_version_id(val)) FROM crash_rows}), '>', 5,
	'the committed rows span many key versions (the rotation ran during the load)');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT DISTINCT kms_version_id(val) AS id FROM crash_rows
	                      UNION SELECT DISTINCT kms_version_id(acct) FROM crash_rows) u
	 WHERE NOT EXISTS (SELECT 1 FROM kms_keys k WHERE k.version_id = u.id)}),
	'0', "every committed row's key version is in kms_keys");
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM crash_rows r
	 WHERE NOT EXISTS (SELECT 1 FROM kms_keys k WHERE k.version_id = kms_version_id(r.val) AND k.key_name = 'bulk')}),
	'0', 'and belongs to the key it was encrypted under');
is($node->safe_psql('postgres', q{
	SELECT string_agg(k.key_name || '=' || (SELECT count(*) FROM kms_keys v WHERE v.key_name = k.key_name AND v.current),
	                  ',' ORDER BY k.key_name)
	  FROM (SELECT DISTINCT key_name FROM kms_keys) k}),
	'acct=1,bulk=1', 'exactly one active version per key');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM kms_keys WHERE NOT current AND state <> 'decrypt-only'}),
	'0', 'every other version is decrypt-only');
is($node->safe_psql('postgres', q{
	SELECT bool_and(vs = ARRAY(SELECT generate_series(1, cardinality(vs))))
	  FROM (SELECT array_agg(version ORDER BY version) vs FROM kms_keys GROUP BY key_name) k}),
	't', 'versions of every key are numbered 1..n without gaps');
is($node->safe_psql('postgres', q{
	SELECT (SELECT array_agg(version ORDER BY version) FROM kms_keys WHERE key_name = 'bulk') =
	       (SELECT array_agg(v ORDER BY v) FROM (SELECT 1 AS v UNION ALL SELECT version FROM rotations_done) r)}),
	't', 'the versions of the rotated key are exactly its committed rotations');
is($node->safe_psql('postgres', q{SELECT max(version) FROM kms_keys WHERE key_name = 'bulk'}),
	$inflight_version - 1, 'the uncommitted rotation left no version');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM kms_keys WHERE key_name = 'bulk' AND current
	   AND version = (SELECT max(version) FROM kms_keys WHERE key_name = 'bulk')}),
	'1', 'the newest committed version is the current one');

# indexes and the blind index survived recovery
$node->safe_psql('postgres', q{
	SELECT bt_index_parent_check('crash_rows_bidx', true);
	SELECT bt_index_parent_check('crash_rows_pkey', true)});
pass('amcheck: the blind index and the primary key match the heap after recovery');
my $probe_id = $node->safe_psql('postgres', q{SELECT id FROM crash_rows WHERE id % 13 <> 0 ORDER BY id DESC LIMIT 1});
is($node->safe_psql('postgres', qq{
	SET enable_seqscan = off;
	SELECT string_agg(id::text, ',') FROM crash_rows
	 WHERE kms_blind_index(val) = kms_blind_index(expected_val($probe_id), 'bulk')}),
	$probe_id, 'a blind-index lookup of the newest committed row finds it');

# the key works after restart
my ($vid, $current, $pt) = split /\|/, $node->safe_psql('postgres', q{
	WITH e AS (SELECT kms_encrypt('after restart', 'bulk') AS v)
	SELECT kms_version_id(v), (SELECT version_id FROM kms_keys WHERE key_name = 'bulk' AND current), kms_decrypt(v) FROM e});
is($pt, 'after restart', 'kms_encrypt and kms_decrypt work after restart');
is($vid, $current, 'under the current version');
my $max_id = $node->safe_psql('postgres', q{SELECT max(version_id) FROM kms_keys});
is($node->safe_psql('postgres', q{SELECT kms_rotate_key('bulk')}), $inflight_version,
	'rotation after restart continues the numbering (taking the number the lost rotation had)');
cmp_ok($node->safe_psql('postgres', q{SELECT version_id FROM kms_keys WHERE key_name = 'bulk' AND current}),
	'>', $max_id, 'with a version id never used before');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE kms_decrypt(val) IS DISTINCT FROM expected_val(id)) FROM crash_rows}),
	'0', 'every row still decrypts after the rotation');

$node->stop;
done_testing();
