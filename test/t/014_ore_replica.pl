# A streaming replica without KMS access serves order-revealing range queries,
# ORDER BY ... LIMIT and named blind-index lookups through its indexes (issue 14,
# "done when": a streaming replica serves range queries without KMS calls for
# the index).  The primary's keys are aws-kms: keys of an emulator of this test;
# the standby's aws_endpoint is a closed port, so any KMS call it made would
# fail.  The probes are computed where the key is (on the primary) and sent to
# the standby as literals, as an application with the key would.  On the
# standby: EXPLAIN shows the kms_ore / kms_blind_tag expression indexes, the
# rows equal the primary's and the plaintext's, and the session's
# kms_cache_stats() count no KMS call and no unwrap.  Positive controls: the
# standby cannot decrypt (58000), and that attempt is counted as a KMS call.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use PgckAws;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

aws_clean_env();
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $emu = start_emulator(dir => "$tmp/emu");
my $closed_port = PostgreSQL::Test::Cluster::get_free_port();
$ENV{AWS_ACCESS_KEY_ID} = 'AKIDPGCKTEST000000001';
$ENV{AWS_SECRET_ACCESS_KEY} = 'pgck-test-secret-0000000000000000000000';
$ENV{AWS_CONFIG_FILE} = '/dev/null';
$ENV{AWS_SHARED_CREDENTIALS_FILE} = '/dev/null';
$ENV{AWS_EC2_METADATA_DISABLED} = 'true';
my $nrows = 5000;

# ------------------------------------------------------------------ primary
my $primary = PostgreSQL::Test::Cluster->new('ore_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
pgcrypt_kms.aws_endpoint = '$emu->{url}'
pgcrypt_kms.aws_region = 'us-east-1'
});
$primary->start;
$primary->safe_psql('postgres', qq{
	CREATE EXTENSION pgcrypt_kms;
	SELECT kms_create_key('r_dob', 'aws-kms:alias/pgck-test', order_index => true);
	SELECT kms_create_key('r_amt', 'aws-kms:alias/pgck-test', order_index => true);
	SELECT kms_create_key('r_mail', 'aws-kms:alias/pgck-test-2', blind_index => 'email');
	SELECT kms_add_index('r_mail', 'domain', 'domain');
	CREATE TABLE p (id int PRIMARY KEY, dob enc_text, amount enc_text, email enc_text,
	                plain_dob date, plain_amount numeric);
	-- 37 and 20000 are coprime: every date is distinct, so ORDER BY has no ties
	INSERT INTO p SELECT g, kms_encrypt(d, 'r_dob'), kms_encrypt(a, 'r_amt'),
	                     kms_encrypt('u' || g || CASE WHEN g % 3 = 0 THEN '\@Example.com' ELSE '\@other.org' END, 'r_mail'),
	                     d, a
	  FROM (SELECT g, date '1950-01-01' + (g * 37) % 20000 AS d,
	               round(((g * 7919) % 100003 - 50000) / 100.0, 2) + g / 1e6 AS a
	          FROM generate_series(1, $nrows) g) s;
	INSERT INTO p VALUES (0, NULL, NULL, NULL, NULL, NULL);
	CREATE INDEX p_dob ON p (kms_ore(dob));
	CREATE INDEX p_amount ON p (kms_ore(amount));
	CREATE INDEX p_domain ON p (kms_blind_tag(email, 'domain'));
	ANALYZE p;
});

# the probes, computed where the key is
my $lo = $primary->safe_psql('postgres', q{SELECT kms_ore('1980-01-01'::date, 'r_dob')});
my $hi = $primary->safe_psql('postgres', q{SELECT kms_ore('1989-12-31'::date, 'r_dob')});
my $alo = $primary->safe_psql('postgres', q{SELECT kms_ore(-10.5, 'r_amt')});
my $ahi = $primary->safe_psql('postgres', q{SELECT kms_ore(99.99, 'r_amt')});
my $dom = $primary->safe_psql('postgres', q{SELECT kms_blind_tag('example.com', 'r_mail', 'domain')});
like($lo, qr/^ore:/, 'the primary computes a range probe');

my $q_range = "SELECT count(*) || ':' || coalesce(sum(id), 0) FROM p"
  . " WHERE kms_ore(dob) BETWEEN '$lo'::kms_ore_term AND '$hi'::kms_ore_term";
my $q_amount = "SELECT count(*) || ':' || coalesce(sum(id), 0) FROM p"
  . " WHERE kms_ore(amount) >= '$alo'::kms_ore_term AND kms_ore(amount) < '$ahi'::kms_ore_term";
my $q_order = 'SELECT string_agg(id::text, \',\') FROM (SELECT id FROM p ORDER BY kms_ore(dob) LIMIT 100) s';
my $q_order_desc = 'SELECT string_agg(id::text, \',\') FROM (SELECT id FROM p ORDER BY kms_ore(amount) DESC LIMIT 100) s';
my $q_domain = "SELECT count(*) || ':' || coalesce(sum(id), 0) FROM p WHERE kms_blind_tag(email, 'domain') = '$dom'::bytea";

my %want = (
	range => $primary->safe_psql('postgres',
		q{SELECT count(*) || ':' || sum(id) FROM p WHERE plain_dob BETWEEN '1980-01-01' AND '1989-12-31'}),
	amount => $primary->safe_psql('postgres',
		q{SELECT count(*) || ':' || sum(id) FROM p WHERE plain_amount >= -10.5 AND plain_amount < 99.99}),
	order => $primary->safe_psql('postgres',
		q{SELECT string_agg(id::text, ',') FROM (SELECT id FROM p ORDER BY plain_dob LIMIT 100) s}),
	order_desc => $primary->safe_psql('postgres',
		q{SELECT string_agg(id::text, ',') FROM (SELECT id FROM p ORDER BY plain_amount DESC LIMIT 100) s}),
	domain => $primary->safe_psql('postgres',
		q{SELECT count(*) || ':' || sum(id) FROM p WHERE id % 3 = 0 AND id > 0}),
);
my %primary_got = (
	range => $primary->safe_psql('postgres', $q_range),
	amount => $primary->safe_psql('postgres', $q_amount),
	order => $primary->safe_psql('postgres', $q_order),
	order_desc => $primary->safe_psql('postgres', $q_order_desc),
	domain => $primary->safe_psql('postgres', $q_domain),
);
for my $k (sort keys %want)
{
	is($primary_got{$k}, $want{$k}, "primary: $k by term or tag equals the plaintext's");
}
unlike($want{range}, qr/^0:/, 'the range is not empty');

# ------------------------------------------------------------------ standby without KMS access
$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('ore_standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->append_conf('postgresql.conf', qq{
pgcrypt_kms.aws_endpoint = 'http://127.0.0.1:$closed_port'
pgcrypt_kms.kms_timeout = '3s'
});
$standby->start;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is a streaming replica');

# one standby session runs everything, then reads its own counters
my $stats = q{SELECT 'calls=' || kms_calls || ' unwraps=' || unwraps FROM kms_cache_stats()};
my $session = $standby->safe_psql('postgres', join(";\n",
	'SET enable_seqscan = off',
	"EXPLAIN (COSTS OFF) $q_range",
	"EXPLAIN (COSTS OFF) SELECT id FROM p ORDER BY kms_ore(dob) LIMIT 100",
	"EXPLAIN (COSTS OFF) SELECT id FROM p ORDER BY kms_ore(amount) DESC LIMIT 100",
	"EXPLAIN (COSTS OFF) $q_domain",
	'RESET enable_seqscan',
	"SELECT 'range=' || ($q_range)",
	"SELECT 'amount=' || ($q_amount)",
	"SELECT 'order=' || ($q_order)",
	"SELECT 'order_desc=' || ($q_order_desc)",
	"SELECT 'domain=' || ($q_domain)",
	$stats));
like($session, qr/(Index Scan|Bitmap Index Scan) on p_dob|Index Scan using p_dob/,
	'standby: the range is planned on the kms_ore index');
like($session, qr/Limit\n\s*->\s+Index Scan using p_dob on p/,
	'standby: ORDER BY kms_ore(dob) LIMIT 100 reads the kms_ore index in order');
like($session, qr/Limit\n\s*->\s+Index Scan Backward using p_amount on p/,
	'standby: ORDER BY kms_ore(amount) DESC LIMIT 100 reads the index backward');
like($session, qr/Index Scan using p_domain|Bitmap Index Scan on p_domain/,
	'standby: the domain lookup is planned on the kms_blind_tag index');
for my $k (qw(range amount order order_desc domain))
{
	my ($got) = $session =~ /^$k=(.*)$/m;
	is($got, $primary_got{$k}, "standby: $k returns the primary's rows");
}
like($session, qr/^calls=0 unwraps=0$/m, 'standby: no KMS call and no unwrap in that session');

# positive controls: the standby has no KMS access, and an attempt is counted
my ($ret, $out, $err) = $standby->psql('postgres',
	"SELECT kms_decrypt_date(dob) FROM p WHERE id = 7;\n$stats",
	on_error_stop => 0, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:\s+58000/, 'standby: a decrypt needs the KMS and fails (58000)');
like($out, qr/^calls=[1-9]\d* unwraps=0$/m, 'standby: that attempt is counted as a KMS call (the counter counts)');
($ret, $out, $err) = $standby->psql('postgres', q{SELECT kms_ore('1980-01-01'::date, 'r_dob')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:\s+58000/, 'standby: a probe needs the index key, so it cannot be computed there (58000)');

# a row written on the primary later is served too, still with no KMS call
$primary->safe_psql('postgres', q{
	INSERT INTO p VALUES (100000, kms_encrypt('1985-06-15'::date, 'r_dob'), NULL,
	                      kms_encrypt('late@EXAMPLE.com', 'r_mail'), '1985-06-15', NULL)});
$primary->wait_for_catchup($standby);
$session = $standby->safe_psql('postgres', join(";\n",
	"SELECT 'range=' || ($q_range)", "SELECT 'domain=' || ($q_domain)", $stats));
my ($n, $s) = split /:/, $primary_got{range};
like($session, qr/^range=@{[ $n + 1 ]}:@{[ $s + 100000 ]}$/m, 'standby: a row replicated later is in the range');
($n, $s) = split /:/, $primary_got{domain};
like($session, qr/^domain=@{[ $n + 1 ]}:@{[ $s + 100000 ]}$/m, 'standby: and found by its domain');
like($session, qr/^calls=0 unwraps=0$/m, 'standby: still no KMS call');

$standby->stop;
$primary->stop;
done_testing();
