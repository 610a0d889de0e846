# The AWS KMS provider against the KMS emulator (and two stub servers for what the emulator
# cannot act out):
#   1. key references in all four forms (alias name, alias ARN, key id, key ARN) reach the
#      right KMS key; encrypt and decrypt over HTTP and over HTTPS with a test CA made now
#      (pgcrypt_kms.ca_file); a certificate for another host name or from an unknown CA is
#      refused; plain http:// only to loopback;
#   2. calls are cheap and safe: one kept-alive connection per backend; connect and total
#      timeouts; retries on throttling, 5xx and network errors with capped exponential backoff
#      and full jitter, up to pgcrypt_kms.kms_max_attempts; no retry on access denied, invalid
#      ciphertext or validation errors; no redirects followed;
#   3. every KMS error type maps to a documented SQLSTATE (never class 08) with the KMS error
#      type and request id in errdetail;
#   4. one backend's cost: 10,000 encryptions + 10,000 decryptions under a key version make at
#      most one GenerateDataKey-or-Decrypt call per version; another backend adds at most one
#      Decrypt per version;
#   5. kms_rotate_key with aws-kms keys, and the key's kms_context as EncryptionContext;
#   6. no credential, data key, request body or plaintext in any message or server log line at
#      any level (a node runs at log_min_messages = debug5 with temporary credentials; the
#      plaintext data keys are computed with botocore from the wrapped ones, then grepped for).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use File::Find;
use MIME::Base64;
use PgckAws;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

aws_clean_env();
my $root = pgck_root();
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $py = '/usr/bin/python3';
my $emuctl = "$root/test/kms_emulator/emuctl.py";

my $STATIC_AKID = 'AKIDPGCKTEST000000001';
my $STATIC_SECRET = 'pgck-test-secret-0000000000000000000000';
my @messages;    # every message any session got: none may hold a secret

# ------------------------------------------------------------------ services
my $certs = make_certs("$tmp/certs");
my $emu = start_emulator(dir => "$tmp/emu");
my $tls = start_emulator(dir => "$tmp/emu-tls", tls_cert => $certs->{server_cert},
	tls_key => $certs->{server_key}, ca => $certs->{ca});
# (its control API is reached without verification: its name is wrong on purpose)
my $tls_wrong = start_emulator(dir => "$tmp/emu-tls-wrong", tls_cert => $certs->{wrong_cert},
	tls_key => $certs->{wrong_key});
my $stub = start_stub(dir => "$tmp/stub", mode => 'respond');
my $blackhole = start_stub(dir => "$tmp/blackhole", mode => 'blackhole');
my $closed_port = PostgreSQL::Test::Cluster::get_free_port();
note "emulators on $emu->{port} (http), $tls->{port} (https), $tls_wrong->{port} (https, wrong name); "
  . "stub $stub->{port}, blackhole $blackhole->{port}, closed port $closed_port";

my %static_env = (
	AWS_ACCESS_KEY_ID => $STATIC_AKID,
	AWS_SECRET_ACCESS_KEY => $STATIC_SECRET,
	AWS_CONFIG_FILE => '/dev/null',
	AWS_SHARED_CREDENTIALS_FILE => '/dev/null',
	AWS_EC2_METADATA_DISABLED => 'true',
);

my $node = PostgreSQL::Test::Cluster->new('kms');
$node->init;
$node->append_conf('postgresql.conf', qq{
pgcrypt_kms.aws_endpoint = '$emu->{url}'
pgcrypt_kms.aws_region = 'us-east-1'
});
{
	local @ENV{ keys %static_env } = values %static_env;
	$node->start;
}
$node->safe_psql('postgres', q{
	CREATE EXTENSION pgcrypt_kms;
	CREATE TABLE vals (k text PRIMARY KEY, v enc_text);
});

# ------------------------------------------------------------------ helpers
sub sqlstate_of
{
	my ($err) = @_;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
}

# run SQL in a new session; keeps its messages
sub run_sql
{
	my ($n, $sql, %o) = @_;
	my $r = psql_timed($n, $sql, %o);
	push @messages, $r->{err};
	return $r;
}

sub calls { return ctl($emu, 'stats')->{calls}; }
sub ncalls { my ($e, $op) = @_; return ctl($e, 'stats')->{calls}{$op} // 0; }

sub backoffs
{
	my ($err) = @_;
	my @b;
	while ($err =~ /retrying AWS KMS \w+ after (\S+) \(attempt (\d+) of \d+, backoff (\d+) ms\)/g)
	{
		push @b, { after => $1, attempt => $2, ms => $3 };
	}
	return @b;
}
my @backoff_samples;    # [cap, ms] of every retry seen

# a fresh backend decrypting the value stored under key $k of table vals
sub decrypt_sql
{
	my ($k, $expect) = @_;
	return qq{SELECT kms_decrypt(v) = $expect FROM vals WHERE k = '$k';};
}

# Plaintexts never appear whole in a statement (log_statement = all logs statements):
# they are built by concatenation in the server.
sub plain_expr { my ($tag) = @_; return "'PgckAws' || 'Plain-$tag'"; }

# ================================================================== 1. key references
my %kms_keys;
for my $k (@{ ctl($emu, 'list-keys')->{keys} })
{
	$kms_keys{$_} = $k for @{ $k->{aliases} };
}
ok($kms_keys{'alias/pgck-test'} && $kms_keys{'alias/pgck-test-2'} && $kms_keys{'alias/pgck-demo'},
	'the emulator has its three keys');
my %forms = (
	pii => [ 'alias/pgck-test', 'alias/pgck-test' ],
	pii_alias_arn => [ 'arn:aws:kms:us-east-1:111122223333:alias/pgck-test-2', 'alias/pgck-test-2' ],
	pii_key_id => [ $kms_keys{'alias/pgck-demo'}{key_id}, 'alias/pgck-demo' ],
	pii_key_arn => [ $kms_keys{'alias/pgck-test-2'}{arn}, 'alias/pgck-test-2' ],
);
for my $name (sort keys %forms)
{
	my ($ref, $alias) = @{ $forms{$name} };
	my $want_arn = $kms_keys{$alias}{arn};
	ctl($emu, 'reset-stats');
	my $r = run_sql($node, qq{
		SELECT kms_create_key('$name', 'aws-kms:$ref');
		INSERT INTO vals VALUES ('$name', kms_encrypt(@{[ plain_expr($name) ]}, '$name'));});
	is($r->{ret}, 0, "$name: kms_create_key with aws-kms:$ref") or diag $r->{err};
	my $log = ctl($emu, 'call-log')->{calls};
	is_deeply([ map { "$_->{op} $_->{key_arn}" } @$log ], [ "GenerateDataKey $want_arn" ],
		"$name: one GenerateDataKey, on $alias");
	ctl($emu, 'reset-stats');
	$r = run_sql($node, decrypt_sql($name, plain_expr($name)));
	is($r->{out}, 't', "$name: a new backend decrypts the value");
	$log = ctl($emu, 'call-log')->{calls};
	is_deeply([ map { "$_->{op} $_->{key_arn} " . ($_->{error} // 'ok') } @$log ],
		[ "Decrypt $want_arn ok" ], "$name: by one Decrypt on $alias");
}
is($node->safe_psql('postgres', q{SELECT kms_key FROM kms_keys WHERE key_name = 'pii'}),
	'aws-kms:alias/pgck-test', 'kms_keys shows the key reference as given');

# ================================================================== 1b. HTTPS
# The TLS emulators have their own key material: a database of their own.
$node->safe_psql('postgres', 'CREATE DATABASE tls');
$node->safe_psql('tls', 'CREATE EXTENSION pgcrypt_kms');
my $tls_set = qq{SET pgcrypt_kms.aws_endpoint = '$tls->{url}'; SET pgcrypt_kms.ca_file = '$certs->{ca}';};
my $r = run_sql($node, qq{$tls_set
	SELECT kms_create_key('tls', 'aws-kms:alias/pgck-test');
	CREATE TABLE vals (k text PRIMARY KEY, v enc_text);
	INSERT INTO vals VALUES ('tls', kms_encrypt(@{[ plain_expr('tls') ]}, 'tls'));
	SELECT kms_flush_cache();
	@{[ decrypt_sql('tls', plain_expr('tls')) ]}}, db => 'tls');
like($r->{out}, qr/^t$/m, 'HTTPS to 127.0.0.1 with pgcrypt_kms.ca_file: create, encrypt, decrypt')
  or diag $r->{err};
my $tls_calls = ctl($tls, 'stats')->{calls};
is_deeply($tls_calls, { GenerateDataKey => 1, Decrypt => 1 }, 'the HTTPS emulator served those calls');
is(ctl($tls_wrong, 'stats')->{requests}, 0, 'the wrong-name emulator served none');

$r = run_sql($node, qq{SET pgcrypt_kms.aws_endpoint = 'https://localhost:$tls->{port}';
	SET pgcrypt_kms.ca_file = '$certs->{ca}'; @{[ decrypt_sql('tls', plain_expr('tls')) ]}}, db => 'tls');
is($r->{out}, 't', 'HTTPS to localhost (DNS name in the SAN) works too') or diag $r->{err};
is(ncalls($tls, 'Decrypt'), 2, '... over TLS');

my %tls_refusals = (
	'a certificate for another host name' =>
	  [ "https://127.0.0.1:$tls_wrong->{port}", $certs->{ca}, $tls_wrong ],
	'a certificate from an unknown CA (system store)' => [ $tls->{url}, '', $tls ],
	'a certificate from an unknown CA (another CA file)' => [ $tls->{url}, $certs->{other_ca}, $tls ],
);
for my $what (sort keys %tls_refusals)
{
	my ($url, $ca, $server) = @{ $tls_refusals{$what} };
	my $before = ctl($server, 'stats')->{requests};
	$r = run_sql($node, qq{SET pgcrypt_kms.aws_endpoint = '$url'; SET pgcrypt_kms.ca_file = '$ca';
		@{[ decrypt_sql('tls', plain_expr('tls')) ]}}, db => 'tls');
	is(sqlstate_of($r->{err}), '58000', "$what is refused (58000)");
	like($r->{err}, qr/TLS failure: .*(certificate|subject name|host name).*\(1 attempt\)/i,
		"$what: errdetail says TLS failure and the verification problem, not retried")
	  or diag $r->{err};
	is(ctl($server, 'stats')->{requests}, $before, "$what: no request reached the server");
}

# plain http only to loopback
for my $url ('http://10.20.30.40:8080', 'http://kms.us-east-1.amazonaws.com', 'http://169.254.169.254')
{
	$r = run_sql($node, qq{SET pgcrypt_kms.aws_endpoint = '$url'; @{[ decrypt_sql('pii', plain_expr('pii')) ]}});
	is(sqlstate_of($r->{err}), '22023', "plain $url is refused (22023)");
	like($r->{err}, qr/Plain http is allowed only to a loopback address/, '... as not loopback');
}
ctl($emu, 'reset-stats');
$r = run_sql($node, qq{SET pgcrypt_kms.aws_endpoint = 'http://localhost:$emu->{port}';
	@{[ decrypt_sql('pii', plain_expr('pii')) ]}});
is($r->{out}, 't', 'plain http to localhost is accepted') or diag $r->{err};
is(ncalls($emu, 'Decrypt'), 1, '... and reaches the emulator');

# ================================================================== 2. cheap and safe calls
# keep-alive: uncached Decrypts in one backend share one connection
ctl($emu, 'reset-stats');
my $sql = join "\n", map { 'SELECT kms_flush_cache(); ' . decrypt_sql('pii', plain_expr('pii')) } 1 .. 5;
$r = run_sql($node, "$sql\nSELECT by_operation->'Decrypt'->>'calls' FROM kms_cache_stats();");
is($r->{out}, "\nt\n" x 5 . "5", 'five uncached decryptions in one backend: five KMS Decrypt calls')
  or diag $r->{out}, $r->{err};
my $st = ctl($emu, 'stats');
is($st->{calls}{Decrypt}, 5, 'the emulator saw five Decrypt calls');
is($st->{connections}, 1, '... on one kept-alive connection');
run_sql($node, $sql);
is(ctl($emu, 'stats')->{connections}, 2, 'another backend: one more connection for its five calls');

# throttling twice, then success: two retries
ctl($emu, 'reset-stats');
ctl($emu, 'set-fault', { op => 'Decrypt', kind => 'throttle', count => 2 });
$r = run_sql($node, qq{SET client_min_messages = debug1; @{[ decrypt_sql('pii', plain_expr('pii')) ]}
	SELECT by_operation->'Decrypt' FROM kms_cache_stats();});
like($r->{out}, qr/^t$/m, 'throttled twice, then the Decrypt succeeds') or diag $r->{err};
my ($op) = $r->{out} =~ /(\{.*\})/;
$op = json_decode($op // '{}');
is_deeply([ @$op{qw(calls errors retries)} ], [ 1, 0, 2 ], 'kms_cache_stats: 1 call, 0 errors, 2 retries');
is(ncalls($emu, 'Decrypt'), 3, 'the emulator saw 3 Decrypt requests');
my @b = backoffs($r->{err});
is(scalar(@b), 2, 'two backoffs logged at DEBUG1');
ok(@b == 2 && $b[0]{ms} <= 1000 && $b[1]{ms} <= 2000,
	"throttling backoff within the exponential caps 1 s, 2 s (@{[ map { $_->{ms} } @b ]} ms)");
push @backoff_samples, map { [ 1000 * 2**($_->{attempt} - 1), $_->{ms} ] } @b;

# 5xx until the attempts are used up
sub fault_case
{
	my (%o) = @_;
	ctl($emu, 'clear-faults');
	ctl($emu, 'reset-stats');
	ctl($emu, 'set-fault', $o{fault});
	# timed: the call's time is taken in the backend (as for the connect timeout below), not
	# psql's wall time, which also counts the client's start and any stall after the error
	my $call = $o{timed}
	  ? q{DO $t$ DECLARE t0 timestamptz := clock_timestamp();
		BEGIN PERFORM kms_decrypt(v) FROM vals WHERE k = 'pii';
			RAISE NOTICE 'backend ms: %', round(extract(epoch FROM clock_timestamp() - t0) * 1000);
		EXCEPTION WHEN OTHERS THEN
			RAISE NOTICE 'backend ms: %', round(extract(epoch FROM clock_timestamp() - t0) * 1000);
			RAISE;
		END $t$;}
	  : decrypt_sql('pii', plain_expr('pii'));
	my $r = run_sql($node, qq{SET client_min_messages = debug1; $o{set}
		SELECT kms_flush_cache(); $call});
	($r->{backend_ms}) = $r->{err} =~ /backend ms: (\d+)/;
	ctl($emu, 'clear-faults');
	return $r;
}
$r = fault_case(fault => { op => 'Decrypt', kind => 'internal', count => 5 },
	set => 'SET pgcrypt_kms.kms_max_attempts = 3;');
is(sqlstate_of($r->{err}), '58000', 'KMSInternalException on every attempt: 58000');
like($r->{err}, qr/DETAIL:  AWS KMS returned HTTP 500 KMSInternalException: .*\(request id [0-9a-f-]{36}, 3 attempts\)/,
	'errdetail: type, request id, 3 attempts');
is(ncalls($emu, 'Decrypt'), 3, 'exactly 3 Decrypt requests with kms_max_attempts = 3');
@b = backoffs($r->{err});
ok(@b == 2 && $b[0]{ms} <= 50 && $b[1]{ms} <= 100, "5xx backoff within 50 ms, 100 ms (@{[ map { $_->{ms} } @b ]})");
push @backoff_samples, map { [ 50 * 2**($_->{attempt} - 1), $_->{ms} ] } @b;

$r = fault_case(fault => { op => 'Decrypt', kind => 'internal', count => -1 },
	set => 'SET pgcrypt_kms.kms_max_attempts = 6; SET pgcrypt_kms.kms_timeout = 20000;');
is(ncalls($emu, 'Decrypt'), 6, 'kms_max_attempts = 6: six requests');
@b = backoffs($r->{err});
is(scalar(@b), 5, 'five backoffs');
my @over = grep { $_->{ms} > 50 * 2**($_->{attempt} - 1) } @b;
is(scalar(@over), 0, "each 5xx backoff within its cap 50 * 2^(n-1) ms (@{[ map { $_->{ms} } @b ]})");
push @backoff_samples, map { [ 50 * 2**($_->{attempt} - 1), $_->{ms} ] } @b;
my @below = grep { $_->[1] < 0.95 * $_->[0] } @backoff_samples;
ok(@below >= 2, scalar(@below) . ' of ' . scalar(@backoff_samples)
	  . ' backoffs fall well below their cap: full jitter, not a fixed exponential delay');

# no retry on access denied
$r = fault_case(fault => { op => 'Decrypt', kind => 'access_denied', count => 1 }, set => '');
is(sqlstate_of($r->{err}), '42501', 'AccessDeniedException: 42501');
is(ncalls($emu, 'Decrypt'), 1, '... after one request (not retried)');
like($r->{err}, qr/AccessDeniedException: .*\(request id [0-9a-f-]{36}, 1 attempt\)/, '... errdetail type and request id');

# a reset connection is retried
$r = fault_case(fault => { op => 'Decrypt', kind => 'reset', count => 1 }, set => '');
like($r->{out}, qr/^t$/m, 'a connection reset once: the retry succeeds') or diag $r->{err};
is(ncalls($emu, 'Decrypt'), 2, '... on the second request');
like($r->{err}, qr/retrying AWS KMS Decrypt after network error \(attempt 1 of 3/, '... retried as a network error');
$r = fault_case(fault => { op => 'Decrypt', kind => 'reset', count => -1 }, set => 'SET pgcrypt_kms.kms_max_attempts = 2;');
is(sqlstate_of($r->{err}), '58000', 'resets on every attempt: 58000');
like($r->{err}, qr/Could not reach the configured KMS endpoint: network error: .*\(2 attempts\)/, '... after 2 attempts (the endpoint is not named to the client: it is a superuser-only setting)');

# connection refused: retried, then 58000 (never a class 08 code)
$r = run_sql($node, qq{SET client_min_messages = debug1; SET pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:$closed_port';
	@{[ decrypt_sql('pii', plain_expr('pii')) ]}});
is(sqlstate_of($r->{err}), '58000', 'connection refused: 58000');
like($r->{err}, qr/could not connect: .*\(3 attempts\)/, '... after 3 attempts');
unlike(join("\n", grep { /(?:ERROR|DETAIL|HINT):/ } split /\n/, $r->{err}), qr/127\.0\.0\.1|\b$closed_port\b/,
	'... naming neither the endpoint\'s address nor its port to the client (libcurl\'s own text does; aws_endpoint is superuser-only)');

# connect timeout: a port whose accept queue is full never answers the SYN.  The time is
# taken in the backend, around the statement (the error is re-raised as it was): psql's wall
# time also counts whatever stalls the client after the error (once 6.6 s, in a CI run whose
# server log shows the statement failing after 0.69 s)
for my $attempts (1, 2)
{
	$r = run_sql($node, qq{SET pgcrypt_kms.aws_endpoint = '$blackhole->{url}';
		SET pgcrypt_kms.kms_connect_timeout = 300; SET pgcrypt_kms.kms_max_attempts = $attempts;
		DO \$t\$ DECLARE t0 timestamptz := clock_timestamp();
		BEGIN PERFORM kms_decrypt(v) FROM vals WHERE k = 'pii';
		EXCEPTION WHEN OTHERS THEN
			RAISE NOTICE 'backend ms: %', round(extract(epoch FROM clock_timestamp() - t0) * 1000);
			RAISE;
		END \$t\$;});
	is(sqlstate_of($r->{err}), '58000', "connect timeout, $attempts attempt(s): 58000");
	like($r->{err}, qr/timed out.*\($attempts attempts?\)/, '... timed out') or diag $r->{err};
	my ($ms) = $r->{err} =~ /backend ms: (\d+)/;
	my $lo = 300 * $attempts - 50;
	my $hi = 300 * $attempts + 200 * $attempts + 700;
	ok(defined $ms && $ms >= $lo && $ms < $hi,
		sprintf('... after %s ms in the backend (kms_connect_timeout = 300 ms per attempt; %d..%d; psql: %.0f ms)',
			$ms // '?', $lo, $hi, $r->{ms}));
}

# total timeout: a response slower than kms_timeout
$r = fault_case(fault => { op => 'Decrypt', kind => 'delay', delay_ms => 4000, count => 1 },
	set => 'SET pgcrypt_kms.kms_timeout = 800;', timed => 1);
is(sqlstate_of($r->{err}), '58000', 'a response slower than kms_timeout: 58000');
like($r->{err}, qr/timed out.*pgcrypt_kms\.kms_timeout reached/, '... kms_timeout reached');
ok(defined $r->{backend_ms} && $r->{backend_ms} >= 750 && $r->{backend_ms} < 2000,
	sprintf('... after %s ms in the backend (kms_timeout = 800 ms; psql: %.0f ms)', $r->{backend_ms} // '?', $r->{ms}));
# kms_timeout bounds the retries too
$r = fault_case(fault => { op => 'Decrypt', kind => 'throttle', count => -1 },
	set => 'SET pgcrypt_kms.kms_timeout = 1500; SET pgcrypt_kms.kms_max_attempts = 10;', timed => 1);
my ($attempts_made) = $r->{err} =~ /(\d+) attempts?, (?:pgcrypt_kms\.kms_timeout reached|stopped: the next backoff would pass pgcrypt_kms\.kms_timeout)/;
ok(defined $attempts_made && $attempts_made < 10,
	'throttled with kms_max_attempts = 10 and kms_timeout = 1.5 s: gives up within the timeout, '
	  . 'making no retry whose backoff would overrun it ('
	  . ($attempts_made // '?') . ' attempts)') or diag $r->{err};
ok(defined $r->{backend_ms} && $r->{backend_ms} < 2500,
	sprintf('... after %s ms in the backend (psql: %.0f ms)', $r->{backend_ms} // '?', $r->{ms}));
is(ncalls($emu, 'Decrypt'), $attempts_made // -1, '... and the emulator saw exactly those attempts');

# no redirects followed
for my $status (301, 307, 308)
{
	stub_set($stub, { status => $status, location => "$emu->{url}/", body => '' });
	my $before = ctl($emu, 'stats')->{requests};
	$r = run_sql($node, qq{SET pgcrypt_kms.aws_endpoint = '$stub->{url}'; @{[ decrypt_sql('pii', plain_expr('pii')) ]}});
	is(sqlstate_of($r->{err}), '58000', "HTTP $status with a Location: 58000");
	is(stub_count($stub), 1, "... one request, not retried");
	is(ctl($emu, 'stats')->{requests}, $before, '... and the redirect target got nothing');
}

# ================================================================== 3. error types and SQLSTATEs
# Against the emulator: the real conditions.
ctl($emu, 'create-key', { alias => 'alias/pgck-disabled' });
ctl($emu, 'create-key', { alias => 'alias/pgck-deleted' });
for my $k ('disabled', 'deleted', 'badblob', 'wrongkey')
{
	my $alias = $k =~ /^d/ ? "alias/pgck-$k" : 'alias/pgck-test';
	$node->safe_psql('postgres', qq{SELECT kms_create_key('$k', 'aws-kms:$alias');
		INSERT INTO vals VALUES ('$k', kms_encrypt(@{[ plain_expr($k) ]}, '$k'));});
}
# a changed byte in the wrapped key: InvalidCiphertextException; a version naming another key
# (since 0.2 Decrypt sends the key ARN stored with the version: that is what names the key)
my ($test2) = grep { grep { $_ eq 'alias/pgck-test-2' } @{ $_->{aliases} } } @{ ctl($emu, 'list-keys')->{keys} };
die 'no alias/pgck-test-2 in the emulator' unless $test2 && $test2->{arn};
$node->safe_psql('postgres', qq{
	UPDATE pgcrypt_kms.key_versions SET wrapped_dek = set_byte(wrapped_dek, 40, get_byte(wrapped_dek, 40) # 1)
	 WHERE key_name = 'badblob';
	UPDATE pgcrypt_kms.key_versions SET kms_key = 'aws-kms:alias/pgck-test-2', kms_key_arn = '$test2->{arn}'
	 WHERE key_name = 'wrongkey';});

sub last_request_id
{
	my $log = ctl($emu, 'call-log', { last => 1 })->{calls};
	return @$log ? $log->[0]{request_id} : 'none';
}

sub check_error
{
	my ($what, $r, $state, $type, $attempts, $nreq) = @_;
	is(sqlstate_of($r->{err}), $state, "$what: SQLSTATE $state");
	my $rid = last_request_id();
	like($r->{err}, qr/DETAIL:  AWS KMS returned HTTP \d+ \Q$type\E: .*\(request id \Q$rid\E, $attempts attempts?\)/,
		"$what: errdetail has $type and the request id the emulator logged ($attempts attempt(s))")
	  or diag $r->{err};
	is(ncalls($emu, $r->{op} // 'Decrypt'), $nreq // $attempts, "$what: " . ($nreq // $attempts) . ' request(s)');
}

ctl($emu, 'reset-stats');
$r = run_sql($node, q{SELECT kms_create_key('nf', 'aws-kms:alias/pgck-no-such-key');});
$r->{op} = 'GenerateDataKey';
check_error('unknown alias (NotFoundException)', $r, '42704', 'NotFoundException', 1);

# disable: a cached key keeps working until kms_flush_cache() (or cache_ttl)
ctl($emu, 'reset-stats');
$r = run_sql($node, qq{@{[ decrypt_sql('disabled', plain_expr('disabled')) ]}
	\\! $py $emuctl $emu->{port} disable-key '{"key_id":"alias/pgck-disabled"}' >/dev/null
	@{[ decrypt_sql('disabled', plain_expr('disabled')) ]}
	SELECT kms_flush_cache();
	@{[ decrypt_sql('disabled', plain_expr('disabled')) ]}});
like($r->{out}, qr/^t\nt\n/, 'the key decrypts, and still from the cache after disable-key');
check_error('disabled key after kms_flush_cache (DisabledException)', $r, '55000', 'DisabledException', 1, 2);
ctl($emu, 'reset-stats');
$r = run_sql($node, q{SELECT kms_rotate_key('disabled');});
$r->{op} = 'GenerateDataKey';
check_error('kms_rotate_key on a disabled key', $r, '55000', 'DisabledException', 1);
ctl($emu, 'enable-key', { key_id => 'alias/pgck-disabled' });
$r = run_sql($node, decrypt_sql('disabled', plain_expr('disabled')));
is($r->{out}, 't', 're-enabled key decrypts again');

ctl($emu, 'schedule-deletion', { key_id => 'alias/pgck-deleted', days => 7 });
ctl($emu, 'reset-stats');
$r = run_sql($node, decrypt_sql('deleted', plain_expr('deleted')));
check_error('key pending deletion (KMSInvalidStateException)', $r, '55000', 'KMSInvalidStateException', 1);

ctl($emu, 'reset-stats');
$r = run_sql($node, decrypt_sql('badblob', plain_expr('badblob')));
check_error('changed wrapped key (InvalidCiphertextException)', $r, '58000', 'InvalidCiphertextException', 1);
like($r->{err}, qr/HINT:  The wrapped key is damaged/, '... with a hint');

ctl($emu, 'reset-stats');
$r = run_sql($node, decrypt_sql('wrongkey', plain_expr('wrongkey')));
check_error('wrapped key of another KMS key (IncorrectKeyException)', $r, '58000', 'IncorrectKeyException', 1);

ctl($emu, 'reset-stats');
ctl($emu, 'set-fault', { op => 'Decrypt', kind => 'access_denied', count => 1 });
$r = run_sql($node, qq{@{[ decrypt_sql('pii', plain_expr('pii')) ]}});
check_error('AccessDeniedException', $r, '42501', 'AccessDeniedException', 1);
like(slurp_file($node->logfile), qr/LOG:  pgcrypt_kms: KMS denied access to key "pii" version 1 for role "\w+" \(SQLSTATE 42501\)/,
	'an access denial is logged at LOG for alerting');

my %fault_types = (
	throttle => [ 'ThrottlingException', 400 ],
	internal => [ 'KMSInternalException', 500 ],
	unavailable => [ 'KeyUnavailableException', 500 ],
	dependency_timeout => [ 'DependencyTimeoutException', 503 ],
);
for my $kind (sort keys %fault_types)
{
	my ($type) = @{ $fault_types{$kind} };
	$r = fault_case(fault => { op => 'Decrypt', kind => $kind, count => -1 }, set => 'SET pgcrypt_kms.kms_max_attempts = 2;');
	check_error("$type until the attempts are used up", $r, '58000', $type, 2);
}

# Against the stub: the error types the emulator has no fault for, and 5xx without a type.
# [type, HTTP status, SQLSTATE, attempts with kms_max_attempts = 2]
my @stub_cases = (
	[ 'ValidationException', 400, '58000', 1 ],
	[ 'SerializationException', 400, '58000', 1 ],
	[ 'InvalidCiphertextException', 400, '58000', 1 ],
	[ 'IncorrectKeyException', 400, '58000', 1 ],
	[ 'InvalidKeyUsageException', 400, '58000', 1 ],
	[ 'InvalidGrantTokenException', 400, '58000', 1 ],
	[ 'NotFoundException', 404, '42704', 1 ],
	[ 'DisabledException', 409, '55000', 1 ],
	[ 'KMSInvalidStateException', 409, '55000', 1 ],
	[ 'AccessDeniedException', 400, '42501', 1 ],
	[ 'UnrecognizedClientException', 400, '58000', 1 ],
	[ 'InvalidSignatureException', 400, '58000', 1 ],
	[ 'IncompleteSignatureException', 400, '58000', 1 ],
	[ 'MissingAuthenticationTokenException', 400, '58000', 1 ],
	[ 'ExpiredTokenException', 400, '58000', 1 ],
	[ 'UnknownOperationException', 400, '58000', 1 ],
	[ 'LimitExceededException', 400, '58000', 1 ],
	[ 'DryRunOperationException', 412, '58000', 1 ],
	[ 'ThrottlingException', 400, '58000', 2 ],
	[ 'KMSInternalException', 500, '58000', 2 ],
	[ 'KeyUnavailableException', 500, '58000', 2 ],
	[ 'DependencyTimeoutException', 503, '58000', 2 ],
	[ '', 502, '58000', 2 ],
	[ '', 503, '58000', 2 ],
	[ '', 429, '58000', 2 ],
);
my @bad;
for my $c (@stub_cases)
{
	my ($type, $status, $state, $attempts) = @$c;
	stub_set($stub, { status => $status, type => $type, message => "stub says $status" });
	$r = run_sql($node, qq{SET pgcrypt_kms.aws_endpoint = '$stub->{url}'; SET pgcrypt_kms.kms_max_attempts = 2;
		@{[ decrypt_sql('pii', plain_expr('pii')) ]}});
	my $got = sqlstate_of($r->{err});
	my $shown = $type || '(no error type)';
	my $rid = "stub-$attempts";
	push @bad, "$shown/$status: SQLSTATE $got, want $state" if $got ne $state;
	push @bad, "$shown/$status: errdetail lacks type, request id $rid or $attempts attempt(s): $r->{err}"
	  unless $r->{err} =~ /DETAIL:  AWS KMS returned HTTP $status \Q$shown\E: .*\(request id $rid, $attempts attempts?\)/;
	push @bad, "$shown/$status: " . stub_count($stub) . " requests, want $attempts" if stub_count($stub) != $attempts;
}
is_deeply(\@bad, [], 'every KMS error type and 5xx: the documented SQLSTATE, type and request id in errdetail, '
	  . 'retried only when throttling or 5xx (' . scalar(@stub_cases) . ' cases)');

stub_set($stub, { status => 200, body => '{"KeyId": "x"}' });
$r = run_sql($node, qq{SET pgcrypt_kms.aws_endpoint = '$stub->{url}'; @{[ decrypt_sql('pii', plain_expr('pii')) ]}});
is(sqlstate_of($r->{err}), '58000', 'a malformed 200 answer: 58000');
like($r->{err}, qr/returned a malformed response.*\n.*request id stub-1/, '... named malformed, with the request id');

my @class08 = grep { /ERROR:\s+08[0-9A-Z]{3}:/ } @messages;
is(scalar(@class08), 0, 'no error of any session so far used SQLSTATE class 08');

# ================================================================== 4. one backend's cost
ctl($emu, 'clear-faults');
ctl($emu, 'reset-stats');
my $n = 10000;
$r = run_sql($node, qq{
	SELECT kms_create_key('cost', 'aws-kms:alias/pgck-test');
	CREATE TABLE cost (id int, v enc_text);
	INSERT INTO cost SELECT g, kms_encrypt('PgckAws' || 'Plain-cost-' || g, 'cost') FROM generate_series(1, $n) g;
	SELECT count(*) FROM cost WHERE kms_decrypt(v) = 'PgckAws' || 'Plain-cost-' || id;
	SELECT (by_operation->'GenerateDataKey'->>'calls')::int + (by_operation->'Decrypt'->>'calls')::int FROM kms_cache_stats();});
is($r->{out}, "\n$n\n1", "one backend: create, $n encryptions, $n decryptions; its own stats count 1 KMS call")
  or diag $r->{err};
is_deeply(calls(), { GenerateDataKey => 1 }, '... the emulator saw one GenerateDataKey and nothing else');

ctl($emu, 'reset-stats');
$r = run_sql($node, qq{
	SELECT count(*) FROM cost WHERE kms_decrypt(v) = 'PgckAws' || 'Plain-cost-' || id;
	INSERT INTO cost SELECT g, kms_encrypt('PgckAws' || 'Plain-cost-' || g, 'cost') FROM generate_series($n + 1, 2 * $n) g;});
is($r->{out}, "$n", "a second backend: $n decryptions and $n encryptions") or diag $r->{err};
is_deeply(calls(), { Decrypt => 1 }, '... add one Decrypt');

ctl($emu, 'reset-stats');
$r = run_sql($node, qq{SELECT kms_rotate_key('cost');
	INSERT INTO cost SELECT g, kms_encrypt('PgckAws' || 'Plain-cost-' || g, 'cost') FROM generate_series(2 * $n + 1, 3 * $n) g;});
is($r->{out}, '2', 'kms_rotate_key makes version 2; a backend encrypts 10,000 values under it') or diag $r->{err};
is_deeply(calls(), { GenerateDataKey => 1 }, '... with one GenerateDataKey');
ctl($emu, 'reset-stats');
$r = run_sql($node, qq{
	SELECT count(*) FROM cost WHERE kms_decrypt(v) = 'PgckAws' || 'Plain-cost-' || id;
	SELECT count(DISTINCT kms_version_id(v)) FROM cost;});
is($r->{out}, 3 * $n . "\n2", 'another backend decrypts all 30,000 values under 2 versions') or diag $r->{err};
is_deeply(calls(), { Decrypt => 2 }, '... with one Decrypt per version');

# ================================================================== 5. rotation and KMS context
my $ctx = { app => 'billing', column => 'users.email' };
ctl($emu, 'reset-stats');
$r = run_sql($node, q{
	SELECT kms_create_key('ctx', 'aws-kms:alias/pgck-test', blind_index => 'email',
	                      kms_context => '{"app": "billing", "column": "users.email"}');
	INSERT INTO vals VALUES ('ctx1', kms_encrypt('PgckAws' || 'Plain-ctx1', 'ctx'));
	SELECT kms_rotate_key('ctx');
	INSERT INTO vals VALUES ('ctx2', kms_encrypt('PgckAws' || 'Plain-ctx2', 'ctx'));});
is($r->{out}, "\n2", 'kms_create_key with kms_context and a blind index; kms_rotate_key') or diag $r->{err};
my $log = ctl($emu, 'call-log')->{calls};
is_deeply([ map { $_->{op} } grep { $_->{op} eq 'GenerateDataKey' } @$log ], [ ('GenerateDataKey') x 3 ],
	'three GenerateDataKey calls (DEK, index key, rotated DEK)');
is_deeply([ grep { !(Test::More::eq_hash($_->{encryption_context} // {}, $ctx) && !$_->{error}) } @$log ], [],
	'every call for the key (' . join(', ', map { $_->{op} } @$log) . ') carried its EncryptionContext and succeeded');
# the emulator rotates its own key material: old wrapped keys keep unwrapping
ctl($emu, 'rotate-key', { key_id => 'alias/pgck-test' });
ctl($emu, 'reset-stats');
$r = run_sql($node, q{SELECT kms_decrypt(v) = 'PgckAws' || 'Plain-' || k FROM vals WHERE k IN ('ctx1', 'ctx2') ORDER BY k;
	SELECT count(*) FROM vals WHERE kms_blind_index(v) = kms_blind_index('PgckAws' || 'Plain-ctx1', 'ctx');});
is($r->{out}, "t\nt\n1", 'a new backend decrypts both versions and probes the blind index') or diag $r->{err};
$log = ctl($emu, 'call-log')->{calls};
is_deeply([ map { [ $_->{op}, $_->{encryption_context}, $_->{error} ] } @$log ],
	[ map { [ 'Decrypt', $ctx, undef ] } 1 .. 3 ],
	'... with three Decrypt calls (v1, v2, index key), each with the EncryptionContext');
$r = run_sql($node, q{SELECT kms_rotate_key('ctx'); SELECT kms_rotate_key('pii');});
is($r->{out}, "3\n2", 'kms_rotate_key after the KMS key rotated its material');

# ================================================================== 6. nothing secret in messages or logs
# A node at debug5 with temporary credentials (a session token).  They come from a container
# credentials endpoint, with the authorization token in a file: PostgreSQL itself writes the
# postmaster's whole environment to the log at DEBUG3 ("initial environment dump"), so
# credentials in environment variables would reach a debug3 log whatever the extension does.
# The endpoint is the stub, relaying temporary credentials the test fetched from the
# emulator's ECS endpoint, so the test knows the secret and token it must never find.
my $temp = fetch_ecs_credentials($emu);
my $ecs_auth = 'PgckAwsEcsAuth-' . join('', map { ('a' .. 'z')[ rand 26 ] } 1 .. 24);
stub_set($stub, { status => 200, body => json_encode({ map { $_ => $temp->{$_} }
	qw(AccessKeyId SecretAccessKey Token Expiration RoleArn) }) });
open(my $tok, '>', "$tmp/ecs-auth-token") or die $!;
print $tok "$ecs_auth\n";
close $tok;
my $dbg = PostgreSQL::Test::Cluster->new('debug5');
$dbg->init;
$dbg->append_conf('postgresql.conf', qq{
pgcrypt_kms.aws_endpoint = '$emu->{url}'
pgcrypt_kms.aws_region = 'us-east-1'
log_min_messages = debug5
log_min_error_statement = debug5
log_error_verbosity = verbose
});
{
	local @ENV{qw(AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE AWS_EC2_METADATA_DISABLED)} =
	  ('/dev/null', '/dev/null', 'true');
	local $ENV{AWS_CONTAINER_CREDENTIALS_FULL_URI} = "$stub->{url}/v2/credentials";
	local $ENV{AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE} = "$tmp/ecs-auth-token";
	$dbg->start;
}
$dbg->safe_psql('postgres', 'CREATE EXTENSION pgcrypt_kms');
ctl($emu, 'reset-stats');
$r = run_sql($dbg, q{SET client_min_messages = debug5;
	SELECT kms_create_key('dbg', 'aws-kms:alias/pgck-test', blind_index => 'email', kms_context => '{"db": "debug5"}');
	SELECT kms_create_key('dbg2', 'aws-kms:alias/pgck-test-2');
	CREATE TABLE d (id int, v enc_text, w enc_text);
	INSERT INTO d SELECT g, kms_encrypt('PgckAws' || 'Plain-dbg-' || g, 'dbg', 'ctx' || g),
	                        kms_encrypt('PgckAws' || 'Plain-dbg2-' || g, 'dbg2') FROM generate_series(1, 20) g;
	SELECT kms_flush_cache();
	SELECT count(*) FROM d WHERE kms_decrypt(v, 'ctx' || id) = 'PgckAws' || 'Plain-dbg-' || id
	                         AND kms_decrypt(w) = 'PgckAws' || 'Plain-dbg2-' || id;
	SELECT kms_rotate_key('dbg');
	DO $$BEGIN RAISE LOG 'control %', 'PgckAws' || 'CtrlMarker'; END$$;});
is($r->{out}, "\n\n\n20\n2", 'debug5 node with temporary credentials: create, encrypt, decrypt, rotate')
  or diag $r->{err};
is(stub_count($stub), 1, '... with credentials fetched once from the container endpoint');
is(ctl($emu, 'stats')->{errors}{UnrecognizedClientException} // 0, 0, '... signed with their session token');
# errors and retries at debug5 too
ctl($emu, 'set-fault', { faults => [ { op => 'Decrypt', kind => 'throttle', count => 1 },
	{ op => 'Decrypt', kind => 'access_denied', count => 1 } ] });
$r = run_sql($dbg, q{SET client_min_messages = debug5; SELECT kms_flush_cache();
	SELECT count(*) FROM d WHERE kms_decrypt(w) = 'PgckAws' || 'Plain-dbg2-' || id;});
is(sqlstate_of($r->{err}), '42501', 'debug5 node: a throttled, then denied Decrypt');
$r = run_sql($dbg, q{SET client_min_messages = debug5;
	SELECT kms_decrypt(v, 'wrong context') FROM d WHERE id = 1;});
is(sqlstate_of($r->{err}), '22K01', 'debug5 node: a value under the wrong context fails (22K01)');
ctl($emu, 'clear-faults');

# the plaintext data keys, computed from the wrapped ones with botocore
my %wrapped;
for my $row (split /\n/, $dbg->safe_psql('postgres', q{
	SELECT k.key_name, k.kms_key, k.kms_context::text, translate(encode(v.wrapped_dek, 'base64'), E'\n', '')
	  FROM pgcrypt_kms.key_versions v JOIN pgcrypt_kms.keys k USING (key_name)
	UNION ALL
	SELECT key_name || '-index', kms_key, kms_context::text, translate(encode(index_key_wrapped, 'base64'), E'\n', '')
	  FROM pgcrypt_kms.keys WHERE index_key_wrapped IS NOT NULL}))
{
	my ($name, $kms_key, $context, $b64) = split /\|/, $row;
	$b64 =~ s/\s//g;
	push @{ $wrapped{"$kms_key|$context"} }, [ $name, $b64 ];
}
my %needles = (
	'static secret access key' => $STATIC_SECRET,
	'temporary secret access key' => $temp->{SecretAccessKey},
	'session token' => $temp->{Token},
	'session token (first 40 characters)' => substr($temp->{Token}, 0, 40),
	'container authorization token' => $ecs_auth,
	'plaintext' => 'PgckAwsPlain',
);
my $ndeks = 0;
for my $group (sort keys %wrapped)
{
	my ($kms_key, $context) = split /\|/, $group;
	$kms_key =~ s/^aws-kms://;
	my $in = join '', map { "$_->[1]\n" } @{ $wrapped{$group} };
	my $infile = "$tmp/wrapped.txt";
	open(my $fh, '>', $infile) or die $!;
	print $fh $in;
	close $fh;
	local $ENV{AWS_ACCESS_KEY_ID} = $STATIC_AKID;
	local $ENV{AWS_SECRET_ACCESS_KEY} = $STATIC_SECRET;
	my $out = `$py $root/test/t/lib/pgck_kms_decrypt.py $emu->{url} us-east-1 '$kms_key' '$context' < $infile 2>&1`;
	die "botocore decrypt failed: $out" if $? != 0;
	my @deks = split /\n/, $out;
	for my $i (0 .. $#deks)
	{
		my $name = $wrapped{$group}[$i][0];
		# what a Decrypt request body carries (and GenerateDataKey's response)
		$needles{"wrapped data key $name #$i (request body)"} = $wrapped{$group}[$i][1];
		my $raw = decode_base64($deks[$i]);
		die "not a 32-byte key: $name" unless length($raw) == 32;
		$needles{"data key $name #$i (base64)"} = $deks[$i];
		$needles{"data key $name #$i (hex)"} = unpack('H*', $raw);
		$needles{"data key $name #$i (HEX)"} = uc unpack('H*', $raw);
		$ndeks++;
	}
}
is($ndeks, 4, 'botocore unwrapped the debug5 node\'s 4 data keys (3 DEK versions, 1 index key)');

$dbg->stop;
$node->stop;
my @log_roots = ($PostgreSQL::Test::Utils::log_path, "$tmp/emu", "$tmp/emu-tls", "$tmp/emu-tls-wrong");
push @log_roots, $ENV{PGCK_TMP} if $ENV{PGCK_TMP} && -d $ENV{PGCK_TMP};
my $control = grep_secrets([ $PostgreSQL::Test::Utils::log_path ], { control => 'PgckAwsCtrlMarker' });
ok(grep({ /debug5\.log/ } @{ $control->{hits} }), 'the grep finds a marker the debug5 node logged (positive control)');
like(slurp_file($dbg->logfile), qr/DEBUG:  .*pgcrypt_kms: HTTP request to 127\.0\.0\.1/, 'the debug5 log has the extension\'s debug lines');
# server logs and emulator logs; not the TAP transcripts (regress_log_*, tap_*.log)
my @files;
File::Find::find({ no_chdir => 1, wanted => sub {
	push @files, $File::Find::name if -f $_ && /\.log$/ && !m{/(regress_log_[^/]*|tap_[^/]*)$};
} }, grep { -d } @log_roots);
my $found = grep_secrets(\@files, \%needles);
is_deeply($found->{hits}, [], 'no plaintext, secret key, session token, data key (base64 or hex) or request body in '
	  . scalar(@files) . ' server and emulator logs');
my @leaky;
for my $m (@messages)
{
	for my $name (sort keys %needles)
	{
		push @leaky, $name if index($m, $needles{$name}) >= 0;
	}
}
is_deeply(\@leaky, [], 'no secret, data key or plaintext in the ' . scalar(@messages) . ' sessions\' messages (errors, hints, debug5)');

done_testing();
