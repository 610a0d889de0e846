-- rotate one of the two keys (rare)
\set k random(1, 2)
SELECT kms_rotate_key((ARRAY['email', 'account'])[:k]);
