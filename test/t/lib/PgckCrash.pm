# A crash restart for the TAP tests that need one (013_usage_clusters.pl,
# 017_default_bound.pl): a backend SIGKILLed (its shell's parent), so the postmaster
# reinitializes shared memory (restart_after_crash, which the test clusters turn off) and
# reloads the counts file without saving it, as after a power cut.
package PgckCrash;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Utils qw(slurp_file);
use Test::More;

our @EXPORT = qw(crash_restart);

# crash_restart($node): one assertion, that this crash (the log written after it began, not
# an earlier crash's line) killed a backend
sub crash_restart
{
	my ($n) = @_;
	$n->append_conf('postgresql.conf', 'restart_after_crash = on');
	$n->reload;
	my $log_offset = -s $n->logfile;
	$n->psql('postgres', q{COPY (SELECT 1) TO PROGRAM 'kill -9 $PPID'});
	$n->poll_query_until('postgres', 'SELECT true') or die 'the server did not restart after the crash';
	like(slurp_file($n->logfile, $log_offset), qr/server process \(PID \d+\) was terminated by signal 9/,
		'(a backend was killed: a crash restart)');
	return;
}

1;
