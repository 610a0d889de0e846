# Logical replication of the keyring (a publication FOR ALL TABLES carries
# the five pgcrypt_kms tables).  With a real subscription:
#   - a keyring change applied by the apply worker (which fires row triggers
#     only, never statement triggers) reaches an open subscriber session and
#     the subscriber's shared key cache: a replicated destroy is refused
#     (42704) and its shared entry wiped, a replicated retirement is refused
#     (55000), a finished index rotation probes under the new index key;
#   - the subscriber's keyring is the publisher's and read-only: an
#     encryption that would rotate (the version was created by the publisher)
#     and key administration are refused with 55000, nothing is written, and
#     the publisher's next rotation still applies.
use strict;
use warnings;
use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $pub_key = "$tmp/pub_master.key";
my $sub_key = "$tmp/sub_master.key";

my $pub = PostgreSQL::Test::Cluster->new('lr_pub');
$pub->init(allows_streaming => 'logical');
$pub->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pgcrypt_kms'
pgcrypt_kms.local_key_file = '$pub_key'
});
$pub->start;
$pub->safe_psql('postgres', q{
	CREATE EXTENSION pgcrypt_kms;
	SELECT kms_create_key('gone', 'local:lr');
	SELECT kms_create_key('ret', 'local:lr');
	SELECT kms_create_key('mail', 'local:lr', blind_index => 'email');
	SELECT kms_create_key('w', 'local:lr');
	CREATE TABLE t (id int PRIMARY KEY, g enc_text, r enc_text, m enc_text);
	INSERT INTO t VALUES (1, kms_encrypt('LrGone-1', 'gone'), kms_encrypt('LrRet-1', 'ret'),
	                      kms_encrypt('alice@example.com', 'mail'));
	-- ret: row 1 under version 1 (retired below), row 2 under version 2
	SELECT kms_rotate_key('ret');
	INSERT INTO t VALUES (2, NULL, kms_encrypt('LrRet-2', 'ret'), NULL);
	CREATE PUBLICATION p FOR ALL TABLES;
});
is($pub->safe_psql('postgres',
	q{SELECT count(*) FROM pg_publication_tables WHERE pubname = 'p' AND schemaname = 'pgcrypt_kms'}),
	'5', 'a publication FOR ALL TABLES carries the five keyring tables');

copy($pub_key, $sub_key) or die "copy: $!";
chmod 0600, $sub_key;
my $sub = PostgreSQL::Test::Cluster->new('lr_sub');
$sub->init;
$sub->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pgcrypt_kms'
pgcrypt_kms.local_key_file = '$sub_key'
pgcrypt_kms.shared_cache_size = 16
});
$sub->start;
my $pub_conn = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres', qq{
	CREATE EXTENSION pgcrypt_kms;
	CREATE TABLE t (id int PRIMARY KEY, g enc_text, r enc_text, m enc_text);
	CREATE SUBSCRIPTION s CONNECTION '$pub_conn' PUBLICATION p;
});
$sub->wait_for_subscription_sync($pub, 's');

# an open subscriber session, its SQLSTATEs shown
my $s = $sub->background_psql('postgres', on_error_stop => 0);
$s->query_safe('\set VERBOSITY verbose');
sub error_of
{
	my ($session, $sql) = @_;
	$session->{stderr} = '';
	$session->query($sql);
	my $err = $session->{stderr};
	$session->{stderr} = '';
	return $err;
}
is($s->query_safe(q{SELECT kms_decrypt(g) || ' ' || kms_decrypt(r) FROM t WHERE id = 1}), 'LrGone-1 LrRet-1',
	'the open subscriber session decrypts the replicated values');
is($s->query_safe(q{SELECT string_agg(id::text, ',') FROM t
	  WHERE kms_blind_index(m) = kms_blind_index('Alice@Example.com', 'mail')}), '1',
	'and finds the row by blind index');
my $sc_before = $s->query_safe(q{SELECT invalidated FROM kms_shared_cache_stats()});
cmp_ok($s->query_safe(q{SELECT cached FROM kms_shared_cache_stats()}), '>', 0,
	'the subscriber shared cache holds the unwrapped keys');

sub applied
{
	my ($sql, $what) = @_;
	ok($sub->poll_query_until('postgres', $sql), "the subscriber applied $what");
}

# ------------------------------------------------------------------ destroy
$pub->safe_psql('postgres', q{SELECT kms_destroy_key('gone', 'gone')});
applied(q{SELECT state = 'destroyed' AND wrapped_dek IS NULL FROM pgcrypt_kms.key_versions WHERE key_name = 'gone'},
	'the destroy');
is($s->query_safe(q{SELECT cached || ':' || (invalidated > } . $sc_before . q{) FROM kms_shared_cache_stats()}),
	'0:true', "the apply worker's commit wiped the subscriber database's shared cache entries");
like(error_of($s, q{SELECT kms_decrypt(g) FROM t WHERE id = 1}),
	qr/ERROR:\s+42704: key "gone" version 1 was destroyed/,
	'the same open session refuses the destroyed key (42704), as for a local destroy');

# ------------------------------------------------------------------ retire
# (each step first warms the session's cache again: the error above may have
# emptied it, and the next refusal must come from the applied change)
is($s->query_safe(q{SELECT kms_decrypt(r) FROM t WHERE id = 1}), 'LrRet-1',
	'before the retirement the open session decrypts under version 1');
# a new session fills the shared cache again (the open one hits its own)
is($sub->safe_psql('postgres', q{SELECT kms_decrypt(r) FROM t WHERE id = 1}), 'LrRet-1', 'so does a new session');
$sc_before = $s->query_safe(q{SELECT invalidated FROM kms_shared_cache_stats()});
cmp_ok($s->query_safe(q{SELECT cached FROM kms_shared_cache_stats()}), '>', 0, 'the shared cache holds it');
$pub->safe_psql('postgres', q{SELECT kms_set_key_state('ret', 1, 'retired')});
applied(q{SELECT state = 'retired' FROM pgcrypt_kms.key_versions WHERE key_name = 'ret' AND version = 1},
	'the retirement');
is($s->query_safe(q{SELECT cached || ':' || (invalidated > } . $sc_before . q{) FROM kms_shared_cache_stats()}),
	'0:true', "the retirement's apply wiped the shared cache entries too");
like(error_of($s, q{SELECT kms_decrypt(r) FROM t WHERE id = 1}),
	qr/ERROR:\s+55000: key "ret" version 1 is retired/,
	'the same open session refuses the retired version (55000)');
is($s->query_safe(q{SELECT kms_decrypt(r) FROM t WHERE id = 2}), 'LrRet-2',
	'and still decrypts under the active version');

# ------------------------------------------------------------------ index rotation
is($s->query_safe(q{SELECT string_agg(id::text, ',') FROM t
	  WHERE kms_blind_index(m) = kms_blind_index('Alice@Example.com', 'mail')}), '1',
	'before the index rotation the open session finds the row by blind index');
$pub->safe_psql('postgres', q{SELECT kms_rotate_index_key('mail')});
$pub->safe_psql('postgres', q{CALL kms_reencrypt_table('t', 'm')});
$pub->safe_psql('postgres', q{SELECT kms_finish_index_rotation('mail')});
applied(q{SELECT index_key_version = 2 AND prev_index_key_wrapped IS NULL FROM pgcrypt_kms.keys WHERE key_name = 'mail'},
	'the finished index rotation');
applied(q{SELECT kms_version_id(m) = (SELECT max(id) FROM pgcrypt_kms.key_versions WHERE key_name = 'mail')
	  FROM t WHERE id = 1}, 'the re-tagged value');
is($s->query_safe(q{SELECT string_agg(id::text, ',') FROM t
	  WHERE kms_blind_index(m) = kms_blind_index('Alice@Example.com', 'mail')}), '1',
	'the same open session probes under the new index key and finds the row');

# ------------------------------------------------------------------ the subscriber's keyring is read-only
my $versions = q{SELECT string_agg(id || ':' || key_name || ':' || version || ':' || state, ',' ORDER BY id)
	FROM pgcrypt_kms.key_versions};
my $before = $sub->safe_psql('postgres', $versions);
is($before, $pub->safe_psql('postgres', $versions), 'the subscriber keyring is the publisher\'s');
my ($ret, $out, $err) = $sub->psql('postgres', q{SELECT kms_encrypt('LrLocal', 'w')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:\s+55000: cannot encrypt with key "w": this database subscribes to the keyring/,
	'an encryption on the subscriber (it would rotate the publisher\'s version) is refused: 55000');
like($err, qr/DETAIL:\s+Subscription "s" replicates the keyring/, 'naming the subscription');
unlike($err, qr/23505|LrLocal/, 'no unique violation, no plaintext');
($ret, $out, $err) = $sub->psql('postgres', q{SELECT kms_rotate_key('w')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:\s+55000: key administration is refused on a subscriber of the keyring/,
	'kms_rotate_key on the subscriber is refused: 55000');
($ret, $out, $err) = $sub->psql('postgres', q{SELECT kms_create_key('local_only', 'local:lr')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:\s+55000: key administration is refused/, 'kms_create_key on the subscriber is refused: 55000');
is($sub->safe_psql('postgres', $versions), $before, 'nothing was written into the subscriber keyring');

# replication goes on: the publisher's next rotation applies
is($pub->safe_psql('postgres', q{SELECT kms_rotate_key('w')}), '2', 'the publisher rotates w');
$pub->safe_psql('postgres', q{INSERT INTO t VALUES (3, kms_encrypt('LrAfter-3', 'w'), NULL, NULL)});
applied(q{SELECT count(*) = 1 FROM t WHERE id = 3}, 'the rotation and the row written after it');
is($sub->safe_psql('postgres', $versions), $pub->safe_psql('postgres', $versions),
	'the subscriber keyring follows the publisher\'s');
is($s->query_safe(q{SELECT kms_decrypt(g) FROM t WHERE id = 3}), 'LrAfter-3',
	'the open subscriber session decrypts the value written under the new version');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_subscription WHERE subname = 's' AND pid IS NOT NULL}),
	'1', 'the apply worker runs');
$s->quit;

$sub->stop;
$pub->stop;
done_testing();
