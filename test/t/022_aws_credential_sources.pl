# AWS credential sources of issue 16 item 4, each against the KMS emulator (STS AssumeRole
# verified with SigV4, the SSO portal, a credential_process helper):
#   - assume-role profiles: role_arn + source_profile (static keys; chained through another
#     role; a profile naming itself; a loop refused), + credential_source (Environment,
#     EcsContainer; an unknown one refused); external_id, role_session_name and
#     duration_seconds reach STS; mfa_serial refused before any call (22023);
#   - credential_process: temporary and long-term credentials, arguments split without a
#     shell, a failing helper (exit code named, its stderr never shown), output that is not
#     JSON, a missing command, a hung helper ended by kms_timeout and by statement_timeout
#     (and killed: its pid is gone);
#   - SSO: sso_session and legacy profiles read the token cache at
#     ~/.aws/sso/cache/<sha1>.json and call GetRoleCredentials; an expired or missing cached
#     token refused with the `aws sso login` hint;
#   - each refreshed before expiry (credentials expiring in 700 s: one fetch per use);
#   - no credential, token or helper stderr in any message or log line (debug5).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use Digest::SHA qw(sha1_hex);
use File::Path qw(make_path);
use PgckAws;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use POSIX ();
use Test::More;

aws_clean_env();
my $root = pgck_root();
my $tmp = PostgreSQL::Test::Utils::tempdir;
chmod 0755, $tmp;
my $helper = "$FindBin::RealBin/lib/pgck_credential_process.py";

my $STATIC_AKID = 'AKIDPGCKTEST000000001';
my $STATIC_SECRET = 'pgck-test-secret-0000000000000000000000';
my $ECS_TOKEN = 'pgck-test-ecs-token';
my $SSO_TOKEN = 'pgck-test-sso-access-token';
my $EXTERNAL_ID = 'pgck-ext-42';
my $ROLE = 'arn:aws:iam::111122223333:role/pgck-assumed';
my $ROLE2 = 'arn:aws:iam::111122223333:role/pgck-assumed-2';
my @messages;
my %secrets = (
	'static secret access key' => $STATIC_SECRET,
	'ECS authorization token' => $ECS_TOKEN,
	'SSO access token' => $SSO_TOKEN,
	'credential_process stderr' => 'pgck-process-stderr-secret-7f3a',
);

my $emu = start_emulator(dir => "$tmp/emu");

sub write_file
{
	my ($path, $content, $mode) = @_;
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh $content;
	close $fh;
	chmod $mode // 0600, $path;
	return $path;
}

# the server's HOME, with the SSO token cache
my $home = "$tmp/home";
make_path("$home/.aws/sso/cache");
chmod 0755, $home, "$home/.aws", "$home/.aws/sso";
chmod 0700, "$home/.aws/sso/cache";
my $future = POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(time() + 8 * 3600));
my $past = POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(time() - 3600));
write_file("$home/.aws/sso/cache/" . sha1_hex('pgck-sso') . '.json',
	qq({"startUrl": "https://pgck-example.awsapps.com/start", "region": "us-east-1", "accessToken": "$SSO_TOKEN", "expiresAt": "$future", "refreshToken": "pgck-not-used"}));
write_file("$home/.aws/sso/cache/" . sha1_hex('https://pgck-legacy.awsapps.com/start') . '.json',
	qq({"startUrl": "https://pgck-legacy.awsapps.com/start", "region": "us-east-1", "accessToken": "$SSO_TOKEN", "expiresAt": "$future"}));
write_file("$home/.aws/sso/cache/" . sha1_hex('pgck-sso-old') . '.json',
	qq({"startUrl": "https://pgck-old.awsapps.com/start", "region": "us-east-1", "accessToken": "$SSO_TOKEN", "expiresAt": "$past"}));
system('chown', '-R', 'postgres:postgres', $home) if $> == 0;

my $cred_file = write_file("$tmp/credentials", qq{[base]
aws_access_key_id = $STATIC_AKID
aws_secret_access_key = $STATIC_SECRET
});
my $py = '/usr/bin/python3';
my $config_file = write_file("$tmp/config", qq{[profile role-static]
role_arn = $ROLE
source_profile = base
external_id = $EXTERNAL_ID
role_session_name = pgck-tap-role
duration_seconds = 3600

[profile role-noext]
role_arn = $ROLE
source_profile = base

[profile role-chain]
role_arn = $ROLE2
source_profile = role-static
role_session_name = pgck-tap-chain

[profile role-self]
role_arn = $ROLE
source_profile = role-self
aws_access_key_id = $STATIC_AKID
aws_secret_access_key = $STATIC_SECRET

[profile loop-a]
role_arn = $ROLE
source_profile = loop-b

[profile loop-b]
role_arn = $ROLE2
source_profile = loop-a

[profile role-env]
role_arn = $ROLE
credential_source = Environment

[profile role-ecs]
role_arn = $ROLE
credential_source = EcsContainer

[profile role-nowhere]
role_arn = $ROLE
credential_source = Nowhere

[profile role-mfa]
role_arn = $ROLE
source_profile = base
mfa_serial = arn:aws:iam::111122223333:mfa/pgck-dba

[profile proc]
credential_process = $py $helper ecs

[profile proc-static]
credential_process = $py $helper static

[profile proc-quoted]
credential_process = $py "$helper" quoted 'two words' "\\\$HOME;" "say \\"hi\\""

[profile proc-fail]
credential_process = $py $helper fail

[profile proc-garbage]
credential_process = $py $helper garbage

[profile proc-sleep]
credential_process = $py $helper sleep

[profile proc-missing]
credential_process = $tmp/no-such-helper --flag

[profile sso-new]
sso_session = pgck-sso
sso_account_id = 111122223333
sso_role_name = pgck-sso-role

[sso-session pgck-sso]
sso_start_url = https://pgck-example.awsapps.com/start
sso_region = us-east-1

[profile sso-legacy]
sso_start_url = https://pgck-legacy.awsapps.com/start
sso_region = us-east-1
sso_account_id = 111122223333
sso_role_name = pgck-sso-role

[profile sso-expired]
sso_session = pgck-sso-old
sso_account_id = 111122223333
sso_role_name = pgck-sso-role

[sso-session pgck-sso-old]
sso_start_url = https://pgck-old.awsapps.com/start
sso_region = us-east-1

[profile sso-nocache]
sso_start_url = https://pgck-never-logged-in.awsapps.com/start
sso_region = us-east-1
sso_account_id = 111122223333
sso_role_name = pgck-sso-role
});
my $proc_runs = "$tmp/proc-runs";
my $proc_pid = "$tmp/proc-pid";
write_file($proc_runs, '', 0666);
write_file($proc_pid, '', 0666);

# ------------------------------------------------------------------ the node
my $node = PostgreSQL::Test::Cluster->new('credsrc');
$node->init;
$node->append_conf('postgresql.conf', qq{
pgcrypt_kms.aws_endpoint = '$emu->{url}'
log_min_messages = debug5
log_error_verbosity = verbose
});

my $ecs_full = "$emu->{url}/ecs/credentials";
my %base = (
	HOME => $home,
	AWS_CONFIG_FILE => $config_file,
	AWS_SHARED_CREDENTIALS_FILE => $cred_file,
	AWS_EC2_METADATA_DISABLED => 'true',
	AWS_REGION => 'us-east-1',
	AWS_ENDPOINT_URL_STS => $emu->{url},
	AWS_ENDPOINT_URL_SSO => $emu->{url},
	PGCK_TEST_PROC_URL => $ecs_full,
	PGCK_TEST_PROC_TOKEN => $ECS_TOKEN,
	PGCK_TEST_PROC_RUNS => $proc_runs,
	PGCK_TEST_PROC_PID => $proc_pid,
);

sub restart_with
{
	my (%env) = @_;
	local %ENV = %ENV;
	aws_clean_env();
	my %all = (%base, %env);
	for my $k (keys %all)
	{
		if (defined $all{$k}) { $ENV{$k} = $all{$k}; }
		else { delete $ENV{$k}; }
	}
	if ($node->{_pid}) { $node->restart; }
	else { $node->start; }
	return;
}

sub sqlstate_of
{
	my ($err) = @_;
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
}

my $PLAIN = "'PgckAws' || 'Plain-src'";
my $DECRYPT = "SELECT kms_decrypt(v) = $PLAIN FROM vals WHERE k = 'c';";

sub try_decrypt
{
	my ($pre) = @_;
	my $r = psql_timed($node, "SET client_min_messages = debug2; " . ($pre // '') . "\n$DECRYPT");
	push @messages, $r->{err};
	$r->{ok} = $r->{out} =~ /^t$/m ? 1 : 0;
	($r->{source}) = $r->{err} =~ /AWS credentials from (.+?)\n/;
	$r->{source} //= '';
	$r->{state} = sqlstate_of($r->{err});
	return $r;
}

sub with_profile { my ($p, $more) = @_; return try_decrypt("SET pgcrypt_kms.aws_profile = '$p'; " . ($more // '')); }

sub fetches
{
	my $f = ctl($emu, 'credential-fetches')->{credential_fetches};
	return { map { $_ => $f->{$_} // 0 } qw(sts assume_role sso ecs imds) };
}
sub assume_log { return ctl($emu, 'assume-role-log')->{assume_role}; }
sub proc_runs { my @l = split /\n/, slurp_file($proc_runs); return scalar @l; }

# ------------------------------------------------------------------ setup
restart_with(AWS_ACCESS_KEY_ID => $STATIC_AKID, AWS_SECRET_ACCESS_KEY => $STATIC_SECRET);
$node->safe_psql('postgres', qq{
	CREATE EXTENSION pgcrypt_kms;
	CREATE TABLE vals (k text PRIMARY KEY, v enc_text);
	SELECT kms_create_key('c', 'aws-kms:alias/pgck-test');
	INSERT INTO vals VALUES ('c', kms_encrypt($PLAIN, 'c'));});
restart_with();

# ================================================================== assume role
ctl($emu, 'set-credentials', { external_id => $EXTERNAL_ID });
my $n0 = scalar @{ assume_log() };
my $before = fetches();
my $r = with_profile('role-static');
ok($r->{ok}, 'assume role: role_arn + source_profile with static keys') or diag $r->{err};
is($r->{source}, 'assume role (temporary)', '... temporary credentials from assume role');
is(fetches()->{assume_role} - $before->{assume_role}, 1, '... one STS AssumeRole');
my $e = assume_log()->[-1];
is_deeply([ @$e{qw(RoleArn RoleSessionName ExternalId DurationSeconds signed_by)} ],
	[ $ROLE, 'pgck-tap-role', $EXTERNAL_ID, '3600', 'static' ],
	'... with RoleArn, role_session_name, external_id and duration_seconds, signed by the source profile\'s keys');

$r = with_profile('role-noext');
is($r->{state}, '42501', 'a role whose trust policy wants an ExternalId, asked without one: 42501');
like($r->{err}, qr/could not obtain AWS credentials from assume role \(profile "role-noext"\).*\n.*DETAIL:  STS AssumeRole of \Q$ROLE\E returned HTTP 403 AccessDenied/,
	'... STS\'s AccessDenied in errdetail');
ctl($emu, 'set-credentials', { external_id => undef });

$before = fetches();
$r = with_profile('role-chain');
ok($r->{ok}, 'assume role chained: role-chain → role-static → base') or diag $r->{err};
my @last2 = @{ assume_log() }[-2, -1];
is_deeply([ map { "$_->{RoleArn} by $_->{signed_by}" } @last2 ],
	[ "$ROLE by static", "$ROLE2 by temporary" ],
	'... two AssumeRole calls, the second signed with the first role\'s temporary credentials');
is(fetches()->{assume_role} - $before->{assume_role}, 2, '... two credentials issued');

$r = with_profile('role-self');
ok($r->{ok}, 'a profile that names itself as source_profile uses its own static keys') or diag $r->{err};
is(assume_log()->[-1]{signed_by}, 'static', '... to sign AssumeRole');

$n0 = scalar @{ assume_log() };
$r = with_profile('loop-a');
is($r->{state}, '22023', 'a source_profile loop (loop-a → loop-b → loop-a): 22023');
like($r->{err}, qr/AWS profile "loop-a" has a source_profile loop through "loop-a"/, '... named');
is(scalar @{ assume_log() }, $n0, '... refused before any STS call');

restart_with(AWS_ACCESS_KEY_ID => $STATIC_AKID, AWS_SECRET_ACCESS_KEY => $STATIC_SECRET);
$r = with_profile('role-env');
ok($r->{ok}, 'credential_source = Environment (with pgcrypt_kms.aws_profile naming the profile)') or diag $r->{err};
is($r->{source}, 'assume role (temporary)', '... assume role');
is(assume_log()->[-1]{signed_by}, 'static', '... signed with the environment\'s keys');
restart_with();
$r = with_profile('role-env');
is($r->{state}, '58000', 'credential_source = Environment without keys in the environment: 58000');

restart_with(AWS_CONTAINER_CREDENTIALS_FULL_URI => $ecs_full, AWS_CONTAINER_AUTHORIZATION_TOKEN => $ECS_TOKEN);
$before = fetches();
$r = with_profile('role-ecs');
ok($r->{ok}, 'credential_source = EcsContainer') or diag $r->{err};
my $after = fetches();
is_deeply([ $after->{ecs} - $before->{ecs}, $after->{assume_role} - $before->{assume_role} ], [ 1, 1 ],
	'... one container fetch, then one AssumeRole');
is(assume_log()->[-1]{signed_by}, 'temporary', '... signed with the container\'s temporary credentials');
restart_with();
$r = with_profile('role-nowhere');
is($r->{state}, '22023', 'an unknown credential_source: 22023');
like($r->{err}, qr/unknown credential_source "Nowhere"/, '... named');

$n0 = scalar @{ assume_log() };
$r = with_profile('role-mfa');
is($r->{state}, '22023', 'mfa_serial: refused with 22023');
like($r->{err}, qr/AWS profile "role-mfa" requires an MFA code \(mfa_serial\), which the database server cannot prompt for/,
	'... saying the server cannot prompt for an MFA code');
is(scalar @{ assume_log() }, $n0, '... before any STS call');

# ================================================================== credential_process
my $runs = proc_runs();
$before = fetches();
$r = with_profile('proc');
ok($r->{ok}, 'credential_process: temporary credentials from a helper') or diag $r->{err};
is($r->{source}, 'credential_process (temporary)', '... from credential_process');
is(proc_runs() - $runs, 1, '... the helper ran once');
is(fetches()->{ecs} - $before->{ecs}, 1, '... (which fetched them from the emulator, with the server\'s environment)');
$r = with_profile('proc-static');
ok($r->{ok}, 'credential_process: long-term credentials (no Expiration)') or diag $r->{err};
is($r->{source}, 'credential_process', '... not temporary');
$r = with_profile('proc-quoted');
ok($r->{ok}, 'credential_process: words split as botocore splits them (shlex), no shell expands "$HOME;"') or diag $r->{err};
$r = with_profile('proc-fail');
is($r->{state}, '58000', 'a helper that exits 3: 58000');
like($r->{err}, qr/could not obtain AWS credentials from credential_process \(profile "proc-fail"\).*\n.*DETAIL:  It exited with code 3; it wrote 32 bytes to standard error, not shown/,
	'... its exit code named, its standard error counted, not shown');
$r = with_profile('proc-garbage');
is($r->{state}, '58000', 'a helper whose output is not JSON: 58000') or diag $r->{err};
like($r->{err}, qr/The response is malformed: response body is not valid JSON/, '... malformed output');
$r = with_profile('proc-missing');
is($r->{state}, '58000', 'a credential_process that does not exist: 58000');
like($r->{err}, qr/exited with code 127 \(command not found\)/, '... "command not found"');

for my $how ([ 'pgcrypt_kms.kms_timeout', "SET pgcrypt_kms.kms_timeout = '1500ms';", '58000',
		qr/It did not finish within pgcrypt_kms.kms_timeout; it was killed/ ],
	[ 'statement_timeout', "SET statement_timeout = '1500ms';", '57014', qr/canceling statement due to statement timeout/ ])
{
	my ($what, $set, $state, $re) = @$how;
	write_file($proc_pid, '', 0666);
	$r = with_profile('proc-sleep', $set);
	is($r->{state}, $state, "a hung helper ended by $what: $state");
	like($r->{err}, $re, '... with its message');
	my $pid = slurp_file($proc_pid);
	ok($pid =~ /^\d+$/ && !kill(0, $pid), "... and the helper (pid $pid) was killed and reaped");
}

# ================================================================== SSO
$before = fetches();
$r = with_profile('sso-new');
ok($r->{ok}, 'SSO: sso_session profile, token from ~/.aws/sso/cache/<sha1 of the session name>.json') or diag $r->{err};
is($r->{source}, 'SSO (temporary)', '... temporary credentials from SSO');
is(fetches()->{sso} - $before->{sso}, 1, '... one GetRoleCredentials');
$r = with_profile('sso-legacy');
ok($r->{ok}, 'SSO: legacy profile, cache file named by the SHA-1 of the start URL') or diag $r->{err};
$before = fetches();
$r = with_profile('sso-expired');
is($r->{state}, '58000', 'SSO with an expired cached token: 58000');
like($r->{err}, qr/The cached SSO token expired.*\n(?:.*\n)*?HINT:  Run "aws sso login --sso-session pgck-sso-old" as the server's operating system user/,
	'... telling the DBA to run aws sso login');
is(fetches()->{sso} - $before->{sso}, 0, '... without calling the portal');
$r = with_profile('sso-nocache');
is($r->{state}, '58000', 'SSO without a cached token: 58000');
like($r->{err}, qr/There is no cached SSO token.*\n(?:.*\n)*?HINT:  Run "aws sso login --profile sso-nocache"/, '... with the hint');
ctl($emu, 'set-credentials', { sso_token => 'pgck-rotated-sso-token' });
$r = with_profile('sso-new');
is($r->{state}, '58000', 'SSO token refused by the portal (401): 58000');
like($r->{err}, qr/GetRoleCredentials returned HTTP 401 UnauthorizedException/, '... the portal\'s error in errdetail');
ctl($emu, 'set-credentials', { sso_token => $SSO_TOKEN });

# ================================================================== botocore reads the same files
# botocore's own providers (AssumeRoleProvider, ProcessProvider, SSOProvider) resolve the
# profiles the server just used, from the very same config, credentials and SSO cache files.
{
	local %ENV = %ENV;
	aws_clean_env();
	$ENV{$_} = $base{$_} for keys %base;
	my $n1 = scalar @{ assume_log() };
	my $out = `$py $root/test/kms_emulator/botocore_chain.py --port $emu->{port} --profiles role-static,role-chain,proc,proc-quoted,sso-new,sso-legacy 2>&1`;
	is($out, "role-static assume-role\nrole-chain assume-role\nproc custom-process\nproc-quoted custom-process\nsso-new sso\nsso-legacy sso\n",
		'botocore resolves the same profiles from the same files, and its credentials sign KMS calls');
	my @b = @{ assume_log() }[$n1 .. $n1 + 2];
	is_deeply([ map { join ' ', map { $_ // '-' } @$_{qw(RoleArn RoleSessionName ExternalId DurationSeconds signed_by)} } @b ],
		[ "$ROLE pgck-tap-role $EXTERNAL_ID 3600 static", "$ROLE pgck-tap-role $EXTERNAL_ID 3600 static",
		  "$ROLE2 pgck-tap-chain - - temporary" ],
		'... botocore\'s AssumeRole calls carry what the server\'s carried (same ExternalId, session name, duration)');
}

# ================================================================== refresh before expiry
# credentials expiring in 700 s are inside the advisory window: every use refreshes them
ctl($emu, 'set-credentials', { expiration_seconds => 700 });
for my $case ([ 'role-static', 'assume_role' ], [ 'sso-new', 'sso' ], [ 'proc', 'ecs' ])
{
	my ($p, $counter) = @$case;
	ctl($emu, 'reset-stats');
	$runs = proc_runs();
	$r = with_profile($p, "$DECRYPT SELECT kms_flush_cache(); $DECRYPT SELECT kms_flush_cache();");
	is($r->{out}, "t\n\nt\n\nt", "$p, credentials expiring in 700 s: three uncached decryptions") or diag $r->{err};
	my $st = ctl($emu, 'stats');
	is_deeply([ $st->{credential_fetches}{$counter} // 0, $st->{calls}{Decrypt} // 0, $st->{errors} ], [ 3, 3, {} ],
		"... each refreshed the credentials first (3 $counter fetches), before they expired (no error)");
	is(proc_runs() - $runs, 3, '... the helper ran three times') if $p eq 'proc';
}
ctl($emu, 'set-credentials', { expiration_seconds => undef });
ctl($emu, 'reset-stats');
$r = with_profile('role-static', "$DECRYPT SELECT kms_flush_cache(); $DECRYPT SELECT kms_flush_cache();");
is(ctl($emu, 'stats')->{credential_fetches}{assume_role}, 1, 'role credentials valid for 1 h: one AssumeRole for three uses');

# ================================================================== nothing secret anywhere
$node->stop;
my @class08 = grep { /ERROR:\s+08[0-9A-Z]{3}:/ } @messages;
is(scalar(@class08), 0, 'no error used SQLSTATE class 08');
my @leaky;
for my $m (@messages)
{
	push @leaky, grep { index($m, $secrets{$_}) >= 0 } sort keys %secrets;
	push @leaky, 'plaintext' if $m =~ /PgckAwsPlain/;
}
is_deeply(\@leaky, [], 'no credential, token, helper stderr or plaintext in the ' . scalar(@messages) . ' sessions\' messages');
my $log = slurp_file($node->logfile);
like($log, qr/AWS credentials from assume role/, 'the debug5 log has the extension\'s debug lines');
my @hits;
my $lines = 0;
for my $line (split /\n/, $log)
{
	$lines++;
	next if $line =~ /DEBUG:  (?:00000: )?\t|^\t[A-Za-z_][A-Za-z0-9_]*=/;	# PostgreSQL's own environment dump
	push @hits, map { "$_: line $lines" } grep { index($line, $secrets{$_}) >= 0 } sort keys %secrets;
}
is_deeply(\@hits, [], "no credential, token or helper stderr in $lines server log lines");
my $emu_log = slurp_file("$emu->{dir}/requests.log");
is_deeply([ grep { index($emu_log, $secrets{$_}) >= 0 } sort keys %secrets ], [], 'nor in the emulator\'s request log');

done_testing();
