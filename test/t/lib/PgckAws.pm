# Helpers of the AWS KMS TAP tests (020_aws_kms.pl, 021_aws_credentials.pl): the KMS
# emulator and the stub servers as child processes of the test (stopped by pid in END),
# the emulator's control API, test certificates, psql with timing, and log greps.
package PgckAws;

use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Find;
use File::Spec;
use HTTP::Tiny;
use JSON::PP;
use POSIX ();
use Time::HiRes ();

our @EXPORT = qw(
  pgck_root start_emulator start_stub ctl stub_set stub_count
  fetch_ecs_credentials make_certs psql_timed grep_secrets
  aws_clean_env stop_child json_decode json_encode
);

my $PY = '/usr/bin/python3';
my @children;
my $json = JSON::PP->new->canonical(1);

sub json_decode { return $json->decode($_[0]); }
sub json_encode { return $json->encode($_[0]); }

sub pgck_root
{
	return $ENV{PGCK_ROOT} if $ENV{PGCK_ROOT};
	return File::Spec->rel2abs(dirname(__FILE__) . '/../../..');
}

# Drop every AWS_* variable the caller's environment may carry (test/run.sh exports the
# emulator's static identity), so that each node starts from what the test sets.
sub aws_clean_env
{
	delete $ENV{$_} for grep { /^AWS_/ } keys %ENV;
	return;
}

# fork + exec with stdout/stderr to a file; returns the pid.
sub spawn
{
	my ($out, @cmd) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', $out) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(127);
		open(STDIN, '<', '/dev/null');
		exec(@cmd) or POSIX::_exit(127);
	}
	push @children, $pid;
	return $pid;
}

sub wait_port_file
{
	my ($file, $pid, $what) = @_;
	for (1 .. 300)
	{
		if (-s $file)
		{
			open(my $fh, '<', $file) or die "$file: $!";
			my $port = <$fh>;
			close $fh;
			chomp $port;
			return $port if $port =~ /^\d+$/;
		}
		die "$what exited before it wrote its port file"
		  if waitpid($pid, POSIX::WNOHANG()) == $pid;
		Time::HiRes::sleep(0.05);
	}
	die "$what did not start";
}

# start_emulator(dir => D [, tls_cert => C, tls_key => K, ca => CA]): a KMS emulator of our
# own on a free loopback port.
sub start_emulator
{
	my (%o) = @_;
	my $dir = $o{dir} or die 'dir';
	mkdir $dir;
	my $port_file = "$dir/port";
	my @cmd = ($PY, pgck_root() . '/test/kms_emulator/emulator.py',
		'--port-file', $port_file, '--log', "$dir/requests.log");
	push @cmd, '--tls-cert', $o{tls_cert}, '--tls-key', $o{tls_key} if $o{tls_cert};
	my $pid = spawn("$dir/emulator.out", @cmd);
	my $port = wait_port_file($port_file, $pid, 'the KMS emulator');
	return {
		pid => $pid,
		port => $port,
		dir => $dir,
		scheme => $o{tls_cert} ? 'https' : 'http',
		ca => $o{ca},
		url => ($o{tls_cert} ? 'https' : 'http') . "://127.0.0.1:$port",
	};
}

# start_stub(dir => D, mode => 'respond' | 'blackhole')
sub start_stub
{
	my (%o) = @_;
	my $dir = $o{dir} or die 'dir';
	mkdir $dir;
	my $pid = spawn("$dir/stub.out", $PY, pgck_root() . '/test/t/lib/pgck_stub_server.py',
		'--port-file', "$dir/port", $o{mode});
	my $port = wait_port_file("$dir/port", $pid, "the $o{mode} stub");
	return { pid => $pid, port => $port, dir => $dir, url => "http://127.0.0.1:$port" };
}

sub stop_child
{
	my ($pid) = @_;
	return unless $pid && grep { $_ == $pid } @children;
	kill 'TERM', $pid;
	for (1 .. 100)
	{
		last if waitpid($pid, POSIX::WNOHANG()) == $pid;
		Time::HiRes::sleep(0.05);
	}
	if (kill 0, $pid)
	{
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}
	@children = grep { $_ != $pid } @children;
	return;
}

END
{
	my $status = $?;
	my @pids = reverse @children;
	stop_child($_) for @pids;
	$? = $status;
}

my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 0);

# ctl($emu, 'stats' [, {args}]): the emulator's control API; dies on a non-2xx answer.
sub ctl
{
	my ($emu, $command, $args) = @_;
	my $body = json_encode($args // {});
	if ($emu->{scheme} eq 'https')
	{
		# HTTP::Tiny has no TLS here (no IO::Socket::SSL): emuctl.py speaks it
		local $ENV{PGCK_EMULATOR_SCHEME} = 'https';
		local $ENV{PGCK_EMULATOR_CA} = $emu->{ca} if $emu->{ca};
		my @cmd = ($PY, pgck_root() . '/test/kms_emulator/emuctl.py', $emu->{port}, $command, $body);
		open(my $fh, '-|', @cmd) or die "emuctl: $!";
		my $out = do { local $/; <$fh> };
		close $fh;
		die "emulator control $command failed: $out" if $? != 0;
		return json_decode($out);
	}
	my $r = $http->post("$emu->{url}/_emulator/$command",
		{ content => $body, headers => { 'Content-Type' => 'application/json' } });
	die "emulator control $command failed: $r->{status} $r->{content}" unless $r->{success};
	return json_decode($r->{content});
}

sub stub_set
{
	my ($stub, $config) = @_;
	my $r = $http->post("$stub->{url}/_stub/set",
		{ content => json_encode($config), headers => { 'Content-Type' => 'application/json' } });
	die "stub set failed: $r->{status}" unless $r->{success};
	return;
}

sub stub_count
{
	my ($stub) = @_;
	my $r = $http->get("$stub->{url}/_stub/count");
	die "stub count failed: $r->{status}" unless $r->{success};
	return json_decode($r->{content})->{requests};
}

# Temporary credentials from the emulator's ECS endpoint, fetched by the test itself.
sub fetch_ecs_credentials
{
	my ($emu) = @_;
	my $r = $http->get("$emu->{url}/ecs/credentials",
		{ headers => { Authorization => 'pgck-test-ecs-token' } });
	die "ECS fetch failed: $r->{status}" unless $r->{success};
	return json_decode($r->{content});
}

sub run_or_die
{
	my (@cmd) = @_;
	my $out = `@{[ join ' ', map { "'$_'" } @cmd ]} 2>&1`;
	die "@cmd failed: $out" if $? != 0;
	return $out;
}

# Test CAs and server certificates, made now with openssl:
#   ca.pem            test CA
#   server.pem/.key   signed by it, SAN IP:127.0.0.1, DNS:localhost
#   wrongname.pem/.key signed by it, SAN DNS:kms.wrong-host.example only
#   other-ca.pem      an unrelated CA
sub make_certs
{
	my ($dir) = @_;
	mkdir $dir;
	my $o = '/usr/bin/openssl';
	for my $ca ('ca', 'other-ca')
	{
		run_or_die($o, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
			'-subj', "/CN=pgcrypt_kms test $ca", '-keyout', "$dir/$ca.key", '-out', "$dir/$ca.pem",
			'-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
	}
	my %san = (server => 'IP:127.0.0.1,DNS:localhost', wrongname => 'DNS:kms.wrong-host.example');
	for my $name (sort keys %san)
	{
		run_or_die($o, 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', "/CN=$name",
			'-keyout', "$dir/$name.key", '-out', "$dir/$name.csr");
		open(my $ext, '>', "$dir/$name.ext") or die $!;
		print $ext "subjectAltName=$san{$name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
		close $ext;
		run_or_die($o, 'x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/ca.pem",
			'-CAkey', "$dir/ca.key", '-CAcreateserial', '-days', '2', '-extfile', "$dir/$name.ext",
			'-out', "$dir/$name.pem");
	}
	return {
		ca => "$dir/ca.pem",
		other_ca => "$dir/other-ca.pem",
		server_cert => "$dir/server.pem",
		server_key => "$dir/server.key",
		wrong_cert => "$dir/wrongname.pem",
		wrong_key => "$dir/wrongname.key",
	};
}

# psql_timed($node, $sql [, db => 'postgres']): runs $sql in one new session with
# VERBOSITY verbose and ON_ERROR_STOP; returns a hash {ret, out, err, ms}.
sub psql_timed
{
	my ($node, $sql, %o) = @_;
	my ($out, $err) = ('', '');
	my $t0 = Time::HiRes::time();
	my $ret = $node->psql($o{db} // 'postgres', $sql,
		stdout => \$out, stderr => \$err, on_error_stop => 1,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	my $ms = (Time::HiRes::time() - $t0) * 1000.0;
	return { ret => $ret, out => $out, err => $err, ms => $ms };
}

# grep_secrets(\@roots, \%needles): every (file, needle name) where a needle (a string,
# matched case-sensitively as is) occurs in a regular file under the roots.
sub grep_secrets
{
	my ($roots, $needles) = @_;
	my @files;
	find({ wanted => sub { push @files, $File::Find::name if -f $_ }, no_chdir => 1 },
		grep { -e } @$roots);
	my @hits;
	for my $f (@files)
	{
		open(my $fh, '<:raw', $f) or next;
		my $data = do { local $/; <$fh> };
		close $fh;
		next unless defined $data;
		for my $name (sort keys %$needles)
		{
			push @hits, "$name in $f" if index($data, $needles->{$name}) >= 0;
		}
	}
	return { files => scalar(@files), hits => \@hits };
}

1;
