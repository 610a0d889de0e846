# pgcrypt_kms asks libcurl for TLS 1.2 at least (CURLOPT_SSLVERSION).  OpenSSL 3's default
# security level (1) refuses TLS 1.0 and 1.1 by itself, which hides that floor; a host
# whose OpenSSL configuration lowers the level (here: OPENSSL_CONF with
# CipherString = DEFAULT@SECLEVEL=0 and MinProtocol = TLSv1, given to the server's
# environment) would otherwise accept them.  Under that configuration:
#   - positive control: curl (same libcurl and OpenSSL) at --tlsv1.0 gets an answer from a
#     server that speaks TLS 1.1 only (openssl s_server);
#   - pgcrypt_kms refuses that server: 58000, a failed TLS handshake, the log naming the
#     protocol version.
use strict;
use warnings;
use File::Basename qw(dirname);
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes;
use lib dirname(__FILE__) . '/lib';
use PgckAws;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $certs = make_certs("$tmp/certs");
my $conf = "$tmp/openssl-seclevel0.cnf";
open(my $fh, '>', $conf) or die "$conf: $!";
print $fh <<'EOF';
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1
CipherString = DEFAULT@SECLEVEL=0
EOF
close $fh;

# a TLS 1.1-only HTTPS server
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $server;
{
	local $ENV{OPENSSL_CONF} = $conf;
	$server = PgckAws::spawn("$tmp/s_server.out", '/usr/bin/openssl', 's_server', '-accept', "127.0.0.1:$port",
		'-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0', '-cert', $certs->{server_cert}, '-key', $certs->{server_key},
		'-www', '-quiet');
}
my $up = 0;
for (1 .. 200)
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
	if ($s) { close $s; $up = 1; last; }
	Time::HiRes::sleep(0.05);
}
ok($up, "openssl s_server (TLS 1.1 only) listens on $port");

my $code = `OPENSSL_CONF='$conf' curl -sS -o /dev/null -w '%{http_code}' --cacert '$certs->{ca}' --tlsv1.0 https://127.0.0.1:$port/ 2>&1`;
is($code, '200', 'positive control: under that OpenSSL configuration curl --tlsv1.0 gets an answer over TLS 1.1');
$code = `curl -sS -o /dev/null -w '%{http_code}' --cacert '$certs->{ca}' --tlsv1.0 https://127.0.0.1:$port/ 2>&1`;
like($code, qr/000$/, '... which the default configuration refuses by itself (what hides the floor there)');

aws_clean_env();
my $node = PostgreSQL::Test::Cluster->new('tls_floor');
$node->init;
$node->append_conf('postgresql.conf', qq{
pgcrypt_kms.aws_endpoint = 'https://127.0.0.1:$port'
pgcrypt_kms.aws_region = 'us-east-1'
pgcrypt_kms.ca_file = '$certs->{ca}'
});
{
	local $ENV{OPENSSL_CONF} = $conf;
	local $ENV{AWS_ACCESS_KEY_ID} = 'AKIDPGCKTLSFLOOR0001';
	local $ENV{AWS_SECRET_ACCESS_KEY} = 'pgck-tls-floor-secret';
	local $ENV{AWS_CONFIG_FILE} = '/dev/null';
	local $ENV{AWS_SHARED_CREDENTIALS_FILE} = '/dev/null';
	local $ENV{AWS_EC2_METADATA_DISABLED} = 'true';
	$node->start;
}
$node->safe_psql('postgres', 'CREATE EXTENSION pgcrypt_kms');
my $r = psql_timed($node, q{SELECT kms_create_key('floor', 'aws-kms:alias/pgck-test')});
like($r->{err}, qr/ERROR:  58000: AWS KMS GenerateDataKey failed/, 'a KMS endpoint that speaks only TLS 1.1 is refused (58000)')
  or diag $r->{err};
like($r->{err}, qr/DETAIL:  Could not reach the configured KMS endpoint: .*SSL connect error/,
	'... as a failed TLS handshake') or diag $r->{err};
like(slurp_file($node->logfile), qr/Could not reach 127\.0\.0\.1:$port: .*alert protocol version/,
	'... the log names the protocol version as the reason');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pgcrypt_kms.keys}), '0', '... and no key was created');

$node->stop;
PgckAws::stop_child($server);
done_testing();
