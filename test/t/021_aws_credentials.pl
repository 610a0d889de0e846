# AWS credentials and region the way the AWS SDKs find them, each source against the KMS
# emulator (which issues and verifies temporary credentials, and counts every fetch):
#   - environment variables, with and without a session token;
#   - shared credentials and config files with profiles (pgcrypt_kms.aws_profile, AWS_PROFILE),
#     and which of environment and files wins;
#   - web identity: token file + role ARN through STS AssumeRoleWithWebIdentity (environment
#     and profile);
#   - ECS container credentials: full URI with an authorization token (value or file); the
#     relative URI, served by the emulator through the test-only PGCK_TEST_ECS_HOST_URL
#     stand-in for 169.254.170.2 (and, without it, shown to go to 169.254.170.2);
#   - EC2 IMDSv2: token PUT, role, credentials JSON;
#   - temporary credentials are refreshed before they expire (advisory window 15 min,
#     mandatory 10 min), not after a failure; an expired token is still recovered from once;
#   - region from the setting, AWS_REGION, AWS_DEFAULT_REGION, the profile, or the key ARN;
#   - no credential or token in any message or server log line (log_min_messages = debug5).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use File::Find;
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
my $WEB_TOKEN = 'pgck-test-web-identity-token';
my $ECS_TOKEN = 'pgck-test-ecs-token';
my $ROLE_ARN = 'arn:aws:iam::111122223333:role/pgck-test-role';
my @messages;
my %secrets = (
	'static secret access key' => $STATIC_SECRET,
	'web identity token' => $WEB_TOKEN,
	'ECS authorization token' => $ECS_TOKEN,
);

my $emu = start_emulator(dir => "$tmp/emu");
my $emu_key = (grep { grep { $_ eq 'alias/pgck-test' } @{ $_->{aliases} } } @{ ctl($emu, 'list-keys')->{keys} })[0];

# temporary credentials fetched by the test (for the environment and a profile)
my $temp_env = fetch_ecs_credentials($emu);
my $temp_file = fetch_ecs_credentials($emu);
for my $t ([ env => $temp_env ], [ file => $temp_file ])
{
	$secrets{"temporary secret ($t->[0])"} = $t->[1]{SecretAccessKey};
	$secrets{"session token ($t->[0])"} = $t->[1]{Token};
}

# files
sub write_file
{
	my ($path, $content) = @_;
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh $content;
	close $fh;
	chmod 0600, $path;
	return $path;
}
my $token_file = write_file("$tmp/web-identity-token", "$WEB_TOKEN\n");
my $bad_token_file = write_file("$tmp/bad-web-identity-token", "not-the-token\n");
my $ecs_token_file = write_file("$tmp/ecs-token", "$ECS_TOKEN\n");
my $cred_file = write_file("$tmp/credentials", qq{# shared credentials file
[default]
aws_access_key_id = AKIDPGCKUNKNOWN000001
aws_secret_access_key = not-a-valid-secret-for-the-emulator-0000

[pgck-good]
aws_access_key_id = $STATIC_AKID
aws_secret_access_key = $STATIC_SECRET

[pgck-temp]
aws_access_key_id = $temp_file->{AccessKeyId}
aws_secret_access_key = $temp_file->{SecretAccessKey}
aws_session_token = $temp_file->{Token}
});
my $config_file = write_file("$tmp/config", qq{[default]
region = eu-west-3

[profile pgck-cfg]
aws_access_key_id = $STATIC_AKID
aws_secret_access_key = $STATIC_SECRET
region = ap-northeast-1

[profile pgck-webid]
role_arn = $ROLE_ARN
web_identity_token_file = $token_file
role_session_name = pgck-tap-profile

[profile pgck-sso]
sso_start_url = https://pgck-example.awsapps.com/start
sso_region = us-east-1
});

# ------------------------------------------------------------------ the node
my $node = PostgreSQL::Test::Cluster->new('cred');
$node->init;
$node->append_conf('postgresql.conf', qq{
pgcrypt_kms.aws_endpoint = '$emu->{url}'
log_min_messages = debug5
log_error_verbosity = verbose
});

my %base = (
	AWS_CONFIG_FILE => '/dev/null',
	AWS_SHARED_CREDENTIALS_FILE => '/dev/null',
	AWS_EC2_METADATA_DISABLED => 'true',
	AWS_REGION => 'us-east-1',
);
my %static = (AWS_ACCESS_KEY_ID => $STATIC_AKID, AWS_SECRET_ACCESS_KEY => $STATIC_SECRET);

# (Re)start the node with exactly the base environment plus %env (undef values unset).
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

my $PLAIN = "'PgckAws' || 'Plain-cred'";
my $DECRYPT = "SELECT kms_decrypt(v) = $PLAIN FROM vals WHERE k = 'c';";

# One new session: optional SQL, then an uncached decryption. Returns the psql result with
# {ok} (decrypted right), {source} (of the credentials, from DEBUG1) and {state}.
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

sub fetches
{
	my $f = ctl($emu, 'credential-fetches')->{credential_fetches};
	return { map { $_ => $f->{$_} // 0 } qw(sts ecs imds imds_token) };
}

sub last_call { return ctl($emu, 'call-log', { last => 1 })->{calls}[0] // {}; }

sub region_of_last_call
{
	my $arn = last_call()->{key_arn} // '';
	return $arn =~ /^arn:aws:kms:([^:]+):/ ? $1 : "(no ARN: $arn)";
}

# ------------------------------------------------------------------ setup
restart_with(%static);
$node->safe_psql('postgres', qq{
	CREATE EXTENSION pgcrypt_kms;
	CREATE TABLE vals (k text PRIMARY KEY, v enc_text);
	SELECT kms_create_key('c', 'aws-kms:alias/pgck-test');
	INSERT INTO vals VALUES ('c', kms_encrypt($PLAIN, 'c'));
	SELECT kms_create_key('arnkey', 'aws-kms:arn:aws:kms:sa-east-1:111122223333:key/$emu_key->{key_id}');
	INSERT INTO vals VALUES ('arnkey', kms_encrypt($PLAIN, 'arnkey'));});

# ================================================================== environment
my $r = try_decrypt();
ok($r->{ok}, 'environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY') or diag $r->{err};
is($r->{source}, 'environment', '... credentials from the environment');
is(last_call()->{error}, undef, '... the emulator verified the signature');

restart_with(AWS_ACCESS_KEY_ID => $STATIC_AKID, AWS_SECRET_ACCESS_KEY => 'pgck-test-secret-wrong-000000000000000000');
$r = try_decrypt();
is($r->{state}, '58000', 'environment with a wrong secret: 58000');
like($r->{err}, qr/InvalidSignatureException.*\n.*HINT:  Check the AWS credentials/, '... InvalidSignatureException, with a hint');
restart_with(AWS_ACCESS_KEY_ID => $STATIC_AKID);
$r = try_decrypt();
is($r->{state}, '22023', 'environment with only AWS_ACCESS_KEY_ID: 22023');
like($r->{err}, qr/Only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set/, '... says what is missing');

restart_with(AWS_ACCESS_KEY_ID => $temp_env->{AccessKeyId}, AWS_SECRET_ACCESS_KEY => $temp_env->{SecretAccessKey},
	AWS_SESSION_TOKEN => $temp_env->{Token});
$r = try_decrypt();
ok($r->{ok}, 'environment with AWS_SESSION_TOKEN (temporary credentials from the emulator)') or diag $r->{err};
like($r->{source}, qr/^environment/, '... from the environment');
restart_with(AWS_ACCESS_KEY_ID => $temp_env->{AccessKeyId}, AWS_SECRET_ACCESS_KEY => $temp_env->{SecretAccessKey});
$r = try_decrypt();
is($r->{state}, '58000', 'the same temporary key without its session token: 58000');
like($r->{err}, qr/UnrecognizedClientException/, '... UnrecognizedClientException: the token is what was sent before');

# ================================================================== shared files and profiles
my %files = (AWS_SHARED_CREDENTIALS_FILE => $cred_file, AWS_CONFIG_FILE => $config_file,
	AWS_ENDPOINT_URL_STS => $emu->{url});
restart_with(%files);
$r = try_decrypt();
is($r->{state}, '58000', 'files, no profile named: the [default] profile (an unknown key) is used');
like($r->{err}, qr/UnrecognizedClientException/, '... and refused by KMS');
is($r->{source}, 'shared credentials file', '... credentials from the shared credentials file');
my %profiles = (
	'pgck-good' => [ 'shared credentials file', 'static keys in the credentials file' ],
	'pgck-temp' => [ 'shared credentials file', 'keys and aws_session_token in the credentials file' ],
	'pgck-cfg' => [ 'config file', 'static keys in the config file ([profile name] section)' ],
	'pgck-webid' => [ 'web identity (profile) (temporary)', 'role_arn + web_identity_token_file in the config file' ],
);
for my $p (sort keys %profiles)
{
	my ($source, $what) = @{ $profiles{$p} };
	my $before = fetches();
	$r = try_decrypt("SET pgcrypt_kms.aws_profile = '$p';");
	ok($r->{ok}, "pgcrypt_kms.aws_profile = $p: $what") or diag $r->{err};
	is($r->{source}, $source, "... credentials from the $source");
	is(fetches()->{sts} - $before->{sts}, $p eq 'pgck-webid' ? 1 : 0,
		'... ' . ($p eq 'pgck-webid' ? 'one STS AssumeRoleWithWebIdentity' : 'no STS call'));
}
$r = try_decrypt(q{SET pgcrypt_kms.aws_profile = 'pgck-sso';});
is($r->{state}, '22023', 'an SSO profile without sso_account_id and sso_role_name: 22023 (SSO itself: 022)');
like($r->{err}, qr/AWS profile "pgck-sso" has an incomplete SSO configuration/, '... says so');
$r = try_decrypt(q{SET pgcrypt_kms.aws_profile = 'pgck-nosuch';});
is($r->{state}, '22023', 'an unknown profile: 22023');
like($r->{err}, qr/AWS profile "pgck-nosuch" was not found/, '... named');
# one backend changing its profile resolves the chain again
$r = try_decrypt(qq{SET pgcrypt_kms.aws_profile = 'pgck-good'; $DECRYPT SELECT kms_flush_cache();
	SET pgcrypt_kms.aws_profile = 'default';});
like($r->{out}, qr/^t\n/, 'one backend: profile pgck-good decrypts ...');
like($r->{err}, qr/UnrecognizedClientException/, '... then after SET aws_profile = default the default profile\'s keys are used');

restart_with(%files, AWS_PROFILE => 'pgck-good');
$r = try_decrypt();
ok($r->{ok}, 'AWS_PROFILE = pgck-good selects the profile') or diag $r->{err};
$r = try_decrypt(q{SET pgcrypt_kms.aws_profile = 'default';});
like($r->{err}, qr/UnrecognizedClientException/, 'pgcrypt_kms.aws_profile wins over AWS_PROFILE');

restart_with(%files, %static);
$r = try_decrypt();
ok($r->{ok}, 'environment keys win over the files\' default profile') or diag $r->{err};
is($r->{source}, 'environment', '... credentials from the environment');
$r = try_decrypt(q{SET pgcrypt_kms.aws_profile = 'default';});
like($r->{err}, qr/UnrecognizedClientException/,
	'an explicit pgcrypt_kms.aws_profile wins over environment keys (as botocore does)');
is($r->{source}, 'shared credentials file', '... credentials from the shared credentials file');

# ================================================================== web identity (environment)
my %webid = (AWS_ROLE_ARN => $ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE => $token_file,
	AWS_ROLE_SESSION_NAME => 'pgck-tap-env', AWS_ENDPOINT_URL_STS => $emu->{url});
restart_with(%webid);
my $before = fetches();
$r = try_decrypt();
ok($r->{ok}, 'web identity: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE via STS') or diag $r->{err};
like($r->{source}, qr/^web identity/, '... credentials from web identity');
is(fetches()->{sts} - $before->{sts}, 1, '... one AssumeRoleWithWebIdentity');
like($r->{err}, qr/HTTP request to 127\.0\.0\.1:$emu->{port}: response received, status 200.*\n(?:.*\n)*?.*AWS credentials from web identity \(temporary\)\n(?:.*\n)*?.*HTTP request to 127\.0\.0\.1:$emu->{port}/,
	'... at AWS_ENDPOINT_URL_STS, then KMS');
ctl($emu, 'reset-stats');
ctl($emu, 'set-fault', { op => 'sts', kind => 'throttle', count => 1 });
$r = try_decrypt();
ok($r->{ok}, 'web identity: a throttled STS call is retried') or diag $r->{err};
my $st = ctl($emu, 'stats');
is_deeply([ $st->{faults}{throttle} // 0, $st->{credential_fetches}{sts} // 0 ], [ 1, 1 ],
	'... one Throttling answer, then one credential issued');
restart_with(%webid, AWS_WEB_IDENTITY_TOKEN_FILE => $bad_token_file);
$r = try_decrypt();
is($r->{state}, '58000', 'web identity with a wrong token: 58000');
like($r->{err}, qr/could not obtain AWS credentials from web identity.*\n.*DETAIL:  STS AssumeRoleWithWebIdentity of \S+ returned HTTP 400 InvalidIdentityToken/,
	'... STS\'s InvalidIdentityToken in errdetail');

# ================================================================== ECS container endpoint
my $ecs_full = "$emu->{url}/ecs/credentials";
for my $how ([ 'AWS_CONTAINER_AUTHORIZATION_TOKEN', AWS_CONTAINER_AUTHORIZATION_TOKEN => $ECS_TOKEN ],
	[ 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE => $ecs_token_file ])
{
	my ($what, %tok) = @$how;
	restart_with(AWS_CONTAINER_CREDENTIALS_FULL_URI => $ecs_full, %tok);
	$before = fetches();
	$r = try_decrypt();
	ok($r->{ok}, "ECS: AWS_CONTAINER_CREDENTIALS_FULL_URI with $what") or diag $r->{err};
	is($r->{source}, 'container credentials endpoint (temporary)', '... temporary credentials from the container endpoint');
	is(fetches()->{ecs} - $before->{ecs}, 1, '... one fetch');
}
restart_with(AWS_CONTAINER_CREDENTIALS_FULL_URI => $ecs_full, AWS_CONTAINER_AUTHORIZATION_TOKEN => 'wrong-token');
$r = try_decrypt();
is($r->{state}, '58000', 'ECS with a wrong authorization token: 58000');
like($r->{err}, qr/could not obtain AWS credentials from the container credentials endpoint.*\n.*DETAIL:  The endpoint returned HTTP 401/,
	'... the endpoint\'s 401 in errdetail');
restart_with(AWS_CONTAINER_CREDENTIALS_FULL_URI => 'http://pgck-ecs.example.com/creds');
$r = try_decrypt();
is($r->{state}, '22023', 'ECS full URI over plain http to a non-loopback host: 22023');

# A credential endpoint's 403 is final: asked exactly once (only 429, 5xx and transport
# errors are retried).
restart_with(AWS_CONTAINER_CREDENTIALS_FULL_URI => $ecs_full, AWS_CONTAINER_AUTHORIZATION_TOKEN => $ECS_TOKEN);
ctl($emu, 'set-fault', { op => 'ecs', kind => 'access_denied', count => -1 });
ctl($emu, 'reset-stats');
$r = try_decrypt();
ctl($emu, 'clear-faults');
is($r->{state}, '58000', 'ECS answering 403: 58000');
like($r->{err}, qr/DETAIL:  The endpoint returned HTTP 403/, '... the 403 in errdetail');
is(ctl($emu, 'stats')->{faults}{access_denied} // 0, 1, '... asked exactly once: a 403 is not retried');

# The relative URI resolves against the ECS agent's fixed address, 169.254.170.2: the
# request goes there, and the relative URI wins over a full URI.
restart_with(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI => '/ecs/credentials',
	AWS_CONTAINER_CREDENTIALS_FULL_URI => $ecs_full, AWS_CONTAINER_AUTHORIZATION_TOKEN => $ECS_TOKEN);
$before = fetches();
$r = try_decrypt('SET pgcrypt_kms.kms_connect_timeout = 200; SET pgcrypt_kms.kms_timeout = 1500;');
like($r->{err}, qr/HTTP request to 169\.254\.170\.2: /, 'ECS relative URI: the request goes to 169.254.170.2 (ahead of the full URI)');
is($r->{state}, '58000', '... unreachable here: 58000');
is(fetches()->{ecs} - $before->{ecs}, 0, '... and the full URI was not used');
# Served by the emulator through the test-only stand-in for the ECS agent's address.
restart_with(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI => '/ecs/credentials',
	PGCK_TEST_ECS_HOST_URL => $emu->{url}, AWS_CONTAINER_AUTHORIZATION_TOKEN => $ECS_TOKEN);
$before = fetches();
$r = try_decrypt();
ok($r->{ok}, 'ECS: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI against the emulator') or diag $r->{err};
is($r->{source}, 'container credentials endpoint (temporary)', '... temporary credentials from the container endpoint');
is(fetches()->{ecs} - $before->{ecs}, 1, '... one fetch, with the authorization token');
restart_with(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI => '/ecs/credentials',
	PGCK_TEST_ECS_HOST_URL => $emu->{url}, AWS_CONTAINER_AUTHORIZATION_TOKEN => 'wrong-token');
$r = try_decrypt();
is($r->{state}, '58000', 'ECS relative URI with a wrong token: 58000');

# ================================================================== EC2 IMDSv2
my %imds = (AWS_EC2_METADATA_SERVICE_ENDPOINT => $emu->{url}, AWS_EC2_METADATA_DISABLED => undef);
restart_with(%imds);
$before = fetches();
$r = try_decrypt();
ok($r->{ok}, 'IMDSv2 at AWS_EC2_METADATA_SERVICE_ENDPOINT') or diag $r->{err};
is($r->{source}, 'instance metadata (temporary)', '... temporary credentials from instance metadata');
my $after = fetches();
is_deeply([ $after->{imds_token} - $before->{imds_token}, $after->{imds} - $before->{imds} ], [ 1, 1 ],
	'... one token PUT, one credentials GET (the emulator refuses IMDSv1)');
my @imds_log = grep { /imds/ } split /\n/, slurp_file("$emu->{dir}/requests.log");
like(join("\n", @imds_log[-3 .. -1]),
	qr{PUT /latest/api/token op=imds:token status=200.*\n.*GET /latest/meta-data/iam/security-credentials/ op=imds:role status=200.*\n.*GET /latest/meta-data/iam/security-credentials/pgck-test-role op=imds:credentials status=200},
	'... token PUT, role listing, then the role\'s credentials');
restart_with(AWS_EC2_METADATA_DISABLED => 'true');
$r = try_decrypt();
is($r->{state}, '58000', 'no source at all: 58000');
like($r->{err}, qr/no AWS credentials found/, '... "no AWS credentials found"');

# ================================================================== refresh before expiry
# ECS credentials that expire in 700 s: inside the 15-minute advisory window, so every use
# refreshes them, while they are still valid.
restart_with(AWS_CONTAINER_CREDENTIALS_FULL_URI => $ecs_full, AWS_CONTAINER_AUTHORIZATION_TOKEN => $ECS_TOKEN);
my $three = join "\n", ($DECRYPT, 'SELECT kms_flush_cache();') x 3;
ctl($emu, 'set-credentials', { expiration_seconds => 700 });
ctl($emu, 'reset-stats');
$r = try_decrypt("$DECRYPT SELECT kms_flush_cache(); $DECRYPT SELECT kms_flush_cache();");
is($r->{out}, "t\n\nt\n\nt", 'credentials expiring in 700 s: three uncached decryptions in one backend') or diag $r->{err};
$st = ctl($emu, 'stats');
is($st->{credential_fetches}{ecs}, 3, '... each refreshed the credentials first (3 ECS fetches)');
is_deeply([ $st->{calls}{Decrypt}, $st->{errors} ], [ 3, {} ],
	'... before they expired: 3 Decrypt calls, no error at all (no ExpiredTokenException)');

ctl($emu, 'set-credentials', { expiration_seconds => undef });
ctl($emu, 'reset-stats');
$r = try_decrypt("$DECRYPT SELECT kms_flush_cache(); $DECRYPT SELECT kms_flush_cache();");
is($r->{out}, "t\n\nt\n\nt", 'credentials valid for 1 h: three uncached decryptions') or diag $r->{err};
is(ctl($emu, 'stats')->{credential_fetches}{ecs}, 1, '... one ECS fetch: no refresh outside the window');

# advisory window: a failed refresh keeps the current credentials
ctl($emu, 'set-credentials', { expiration_seconds => 700 });
ctl($emu, 'reset-stats');
my $fault_ecs = qq{\\! $py $emuctl $emu->{port} set-fault '{"op":"ecs","kind":"internal","count":-1}' >/dev/null};
my $clear = qq{\\! $py $emuctl $emu->{port} clear-faults >/dev/null};
$r = try_decrypt("$DECRYPT SELECT kms_flush_cache();\n$fault_ecs\n");
ctl($emu, 'clear-faults');
is($r->{out}, "t\n\nt", 'advisory window (700 s left): the refresh fails, the call goes on with the current credentials')
  or diag $r->{err};
$st = ctl($emu, 'stats');
ok(($st->{faults}{internal} // 0) >= 1, '... the refresh really failed (' . ($st->{faults}{internal} // 0) . ' ECS errors)');
is_deeply([ $st->{credential_fetches}{ecs}, $st->{calls}{Decrypt}, $st->{errors}{ExpiredTokenException} // 0 ], [ 1, 2, 0 ],
	'... one credential issued, two Decrypt calls, no ExpiredTokenException');
like(slurp_file($node->logfile), qr/LOG:  00000: pgcrypt_kms: could not refresh AWS credentials, keeping the current ones until they expire/,
	'... and the failed refresh is logged');

# mandatory window: 5 minutes left, the refresh must succeed
ctl($emu, 'set-credentials', { expiration_seconds => 300 });
ctl($emu, 'reset-stats');
$r = try_decrypt("$DECRYPT SELECT kms_flush_cache();\n$fault_ecs\n");
ctl($emu, 'clear-faults');
like($r->{out}, qr/^t\n/, 'mandatory window (300 s left): the first call works ...');
is($r->{state}, '58000', '... the next, whose refresh fails, is refused (58000)');
like($r->{err}, qr/could not obtain AWS credentials from the container credentials endpoint/, '... naming the source');
is(ctl($emu, 'stats')->{calls}{Decrypt}, 1, '... without calling KMS with credentials about to expire');

# an expired token (revoked early, say) is still recovered from: one refresh, one retry
ctl($emu, 'set-credentials', { expiration_seconds => undef });
ctl($emu, 'reset-stats');
my $expire = qq{\\! $py $emuctl $emu->{port} expire-credentials >/dev/null};
$r = try_decrypt("$DECRYPT SELECT kms_flush_cache();\n$expire\n");
is($r->{out}, "t\n\nt", 'credentials expired under the backend: the call still succeeds') or diag $r->{err};
my $log = ctl($emu, 'call-log')->{calls};
is_deeply([ map { $_->{error} // 'ok' } grep { $_->{op} eq 'Decrypt' } @$log ], [ 'ok', 'ExpiredTokenException', 'ok' ],
	'... after one ExpiredTokenException, a refresh and one retry');
is(ctl($emu, 'stats')->{credential_fetches}{ecs}, 2, '... (two ECS fetches)');

# web identity: the same, through STS
restart_with(%webid);
ctl($emu, 'set-credentials', { expiration_seconds => 700 });
ctl($emu, 'reset-stats');
$r = try_decrypt("$DECRYPT SELECT kms_flush_cache();");
is($r->{out}, "t\n\nt", 'web identity credentials expiring in 700 s: two decryptions') or diag $r->{err};
$st = ctl($emu, 'stats');
is_deeply([ $st->{credential_fetches}{sts}, $st->{errors} ], [ 2, {} ],
	'... two AssumeRoleWithWebIdentity calls, no error');

# IMDS: the session token is reused across credential refreshes in a backend
restart_with(%imds);
ctl($emu, 'set-credentials', { expiration_seconds => 700 });
ctl($emu, 'reset-stats');
$r = try_decrypt("$DECRYPT SELECT kms_flush_cache(); $DECRYPT SELECT kms_flush_cache();");
ctl($emu, 'set-credentials', { expiration_seconds => undef });
is($r->{out}, "t\n\nt\n\nt", 'IMDS credentials expiring in 700 s: three decryptions') or diag $r->{err};
$st = ctl($emu, 'stats');
is_deeply([ @{ $st->{credential_fetches} }{qw(imds imds_token)} ], [ 3, 1 ],
	'... three credential refreshes under one IMDSv2 session token');
is_deeply($st->{errors}, {}, '... no error');

# ================================================================== region
sub region_case
{
	my ($pre, $key) = @_;
	ctl($emu, 'reset-stats');
	# since 0.2 the first unwrap records the key ARN, whose region then wins:
	# forget it, so the region of an alias reference comes from the chain again
	$node->safe_psql('postgres', q{UPDATE pgcrypt_kms.key_versions SET kms_key_arn = NULL WHERE kms_key LIKE 'aws-kms:alias/%'})
	  if $node->safe_psql('postgres', q{SELECT count(*) FROM pg_attribute WHERE attrelid = 'pgcrypt_kms.key_versions'::regclass AND attname = 'kms_key_arn'}) eq '1';
	my $r = psql_timed($node, ($pre // '') . "\nSELECT kms_decrypt(v) = $PLAIN FROM vals WHERE k = '" . ($key // 'c') . "';");
	push @messages, $r->{err};
	return ($r, region_of_last_call());
}
restart_with(%static, AWS_REGION => undef);
my ($rr, $region) = region_case();
is(sqlstate_of($rr->{err}), '22023', 'no region anywhere (setting, environment, profile): 22023');
like($rr->{err}, qr/no AWS region is configured for AWS KMS key "aws-kms:alias\/pgck-test"/, '... says so');
($rr, $region) = region_case(q{SET pgcrypt_kms.aws_region = 'eu-west-1';});
is($region, 'eu-west-1', 'region from pgcrypt_kms.aws_region (the request is signed for it)');
($rr, $region) = region_case(q{SET pgcrypt_kms.aws_region = 'eu-west-1';}, 'arnkey');
is($rr->{out}, 't', 'a key ARN in another region than the setting decrypts ...');
is($region, 'sa-east-1', '... at the ARN\'s region sa-east-1');

restart_with(%static, AWS_REGION => 'ap-south-1', AWS_DEFAULT_REGION => 'ca-central-1');
($rr, $region) = region_case();
is($region, 'ap-south-1', 'region from AWS_REGION (ahead of AWS_DEFAULT_REGION)');
($rr, $region) = region_case(q{SET pgcrypt_kms.aws_region = 'eu-west-1';});
is($region, 'eu-west-1', 'pgcrypt_kms.aws_region wins over AWS_REGION');
($rr, $region) = region_case(undef, 'arnkey');
is($region, 'sa-east-1', 'the key ARN\'s region wins over AWS_REGION');

restart_with(%static, AWS_REGION => undef, AWS_DEFAULT_REGION => 'ca-central-1');
($rr, $region) = region_case();
is($region, 'ca-central-1', 'region from AWS_DEFAULT_REGION');

restart_with(AWS_REGION => undef, AWS_SHARED_CREDENTIALS_FILE => $cred_file, AWS_CONFIG_FILE => $config_file,
	AWS_PROFILE => 'pgck-good');
($rr, $region) = region_case();
is($region, '(no ARN: )', 'profile pgck-good: no region in its config section (and no KMS call) ...');
like($rr->{err}, qr/no AWS region is configured/, '... so no region');
($rr, $region) = region_case(q{SET pgcrypt_kms.aws_profile = 'pgck-cfg';});
is($region, 'ap-northeast-1', 'region from the config file\'s [profile pgck-cfg]');
restart_with(%static, AWS_REGION => undef, AWS_CONFIG_FILE => $config_file);
($rr, $region) = region_case();
is($region, 'eu-west-3', 'region from the config file\'s [default]');

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
is_deeply(\@leaky, [], 'no credential, token or plaintext in the ' . scalar(@messages) . ' sessions\' messages (to debug2)');

# PostgreSQL itself writes the postmaster's environment to the log at DEBUG3 ("initial
# environment dump"): credentials passed in environment variables are in those lines, from
# the server, not from the extension. Those lines are set aside, and counted.
my @roots = ($PostgreSQL::Test::Utils::log_path, $emu->{dir});
push @roots, $ENV{PGCK_TMP} if $ENV{PGCK_TMP} && -d $ENV{PGCK_TMP};
my @files;
File::Find::find({ no_chdir => 1, wanted => sub {
	push @files, $File::Find::name if -f $_ && /\.log$/ && !m{/(regress_log_[^/]*|tap_[^/]*)$};
} }, grep { -d } @roots);
my @hits;
my ($env_dump_lines, $env_dump_secrets, $lines) = (0, 0, 0);
for my $f (@files)
{
	open(my $fh, '<', $f) or next;
	my ($in_dump, $dashes) = (0, 0);
	while (my $line = <$fh>)
	{
		$lines++;
		# up to 15 every variable is a DEBUG line of its own, between two dash lines; from 16
		# on the dump is one message whose variables are the tab-indented lines after it
		if ($line =~ /DEBUG:  .*initial environment dump:\s*$/) { ($in_dump, $dashes) = (1, 0); next; }
		if ($in_dump)
		{
			if ($line =~ /DEBUG:  (?:00000: )?-{10,}\s*$/) { $in_dump = 0 if ++$dashes == 2; next; }
			if ($line =~ /DEBUG:  (?:00000: )?\t/ || $line =~ /^\t[A-Za-z_][A-Za-z0-9_]*=/
				|| $line =~ /LOCATION:  PostmasterMain, postmaster\.c/)
			{
				$env_dump_lines++;
				$env_dump_secrets++ if index($line, $STATIC_SECRET) >= 0;
				next;
			}
			$in_dump = 0;
		}
		push @hits, map { "$_ in $f: line $." } grep { index($line, $secrets{$_}) >= 0 } sort keys %secrets;
		push @hits, "plaintext in $f: line $." if $line =~ /PgckAwsPlain/;
	}
	close $fh;
}
ok($env_dump_lines > 0, "the debug5 log has PostgreSQL's own environment dump ($env_dump_lines lines set aside)");
ok($env_dump_secrets > 0, "positive control: the grep finds the secret access key where it is, in PostgreSQL's "
	  . "environment dump ($env_dump_secrets lines: AWS_SECRET_ACCESS_KEY, written by the server at DEBUG3)");
like(slurp_file($node->logfile), qr/DEBUG:  00000: pgcrypt_kms: AWS credentials from web identity/,
	'the debug5 log has the extension\'s debug lines');
is_deeply(\@hits, [], "no credential, token or plaintext in $lines lines of " . scalar(@files) . ' server and emulator logs');

done_testing();
