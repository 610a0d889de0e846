#!/usr/bin/env bash
# The real AWS CLI (Debian's awscli, v2) against the KMS emulator: if AWS's own client signs,
# sends and parses every operation the extension uses and gets AWS's errors back, the emulator
# is faithful. Checks the outputs, not only exit codes. Uses the emulator on PGCK_EMULATOR_PORT,
# or starts a private one. PGCK_AWS_CLI overrides the CLI (default /usr/bin/aws: the `aws` first
# on PATH may be another install).
set -u
cd "$(dirname "$0")/../.."
. test/kms_emulator/lib.sh
pgck_emulator_ensure || exit 1

AWS=${PGCK_AWS_CLI:-/usr/bin/aws}
if ! [ -x "$AWS" ]; then
	echo "not ok - no AWS CLI at $AWS (Debian package awscli)"
	exit 1
fi
echo "# awscli_fidelity: $("$AWS" --version 2>&1) against http://127.0.0.1:$PGCK_EMULATOR_PORT"
work=$PGCK_EMULATOR_TMP
ACCESS_KEY=AKIDPGCKTEST000000001
SECRET_KEY=pgck-test-secret-0000000000000000000000
SESSION_TOKEN=

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
expect_eq() { # what actual expected
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: expected '$3', got '$2'"; fi
}

# aws_run OUT args...: the CLI with only the test identity in its environment; stdout to OUT,
# stderr to OUT.err; returns the CLI's exit status.
aws_run() {
	local out=$1
	shift
	env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_SECURITY_TOKEN \
		-u AWS_REGION -u AWS_DEFAULT_REGION -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_KMS \
		-u AWS_CA_BUNDLE -u AWS_ROLE_ARN -u AWS_WEB_IDENTITY_TOKEN_FILE \
		HOME="$work" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER="" \
		AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
		${SESSION_TOKEN:+"AWS_SESSION_TOKEN=$SESSION_TOKEN"} \
		AWS_MAX_ATTEMPTS=1 AWS_EC2_METADATA_DISABLED=true \
		"$AWS" "$@" --endpoint-url "http://127.0.0.1:$PGCK_EMULATOR_PORT" --region us-east-1 \
		--output json >"$out" 2>"$out.err"
}

# must_run WHAT OUT args...: aws_run that must succeed.
must_run() {
	local what=$1
	shift
	if aws_run "$@"; then return 0; fi
	not_ok "$what: the CLI failed: $(cat "$1.err")"
	return 1
}

# must_fail WHAT ERROR_TYPE OUT args...: aws_run that must fail with this error type.
must_fail() {
	local what=$1 error=$2 out=$3
	shift 2
	if aws_run "$@"; then
		not_ok "$what: the CLI succeeded, expected $error"
	elif grep -q "($error)" "$out.err"; then
		ok "$what: non-zero exit, $error"
	else
		not_ok "$what: expected $error, stderr: $(cat "$out.err")"
	fi
}

# jget FILE a.b.c: one member of a JSON document (booleans as true/false).
jget() {
	"$PGCK_PYTHON" -c '
import json, sys
value = json.load(open(sys.argv[1]))
for name in sys.argv[2].split("."):
    value = value[name]
print(json.dumps(value) if isinstance(value, (bool, list, dict)) else value)' "$1" "$2"
}

# b64file FILE a.b OUT: decode a base64 member into OUT.
b64file() { jget "$1" "$2" | base64 -d >"$3"; }

# ---------------------------------------------------------------- describe-key
if must_run "describe-key by alias" "$work/describe" kms describe-key --key-id alias/pgck-test; then
	arn=$(jget "$work/describe" KeyMetadata.Arn)
	key_id=$(jget "$work/describe" KeyMetadata.KeyId)
	expect_eq "describe-key by alias: Arn is the key ARN" "$arn" \
		"arn:aws:kms:us-east-1:111122223333:key/$key_id"
	expect_eq "describe-key by alias: KeyState, Enabled, KeyUsage, KeySpec" \
		"$(jget "$work/describe" KeyMetadata.KeyState) $(jget "$work/describe" KeyMetadata.Enabled) $(jget "$work/describe" KeyMetadata.KeyUsage) $(jget "$work/describe" KeyMetadata.KeySpec)" \
		"Enabled true ENCRYPT_DECRYPT SYMMETRIC_DEFAULT"
else
	arn=unknown key_id=unknown
fi
if must_run "describe-key by ARN" "$work/describe_arn" kms describe-key --key-id "$arn"; then
	expect_eq "describe-key by ARN: the same key" "$(jget "$work/describe_arn" KeyMetadata.KeyId)" \
		"$key_id"
fi
arn2=unknown
if must_run "describe-key alias/pgck-test-2" "$work/describe2" kms describe-key \
	--key-id alias/pgck-test-2; then
	arn2=$(jget "$work/describe2" KeyMetadata.Arn)
fi

# ---------------------------------------------------------------- generate-data-key, decrypt
if must_run "generate-data-key" "$work/gdk" kms generate-data-key --key-id alias/pgck-test \
	--key-spec AES_256 --encryption-context tenant=42,column=email; then
	b64file "$work/gdk" Plaintext "$work/gdk.plain"
	b64file "$work/gdk" CiphertextBlob "$work/gdk.blob"
	expect_eq "generate-data-key: KeyId is the key ARN" "$(jget "$work/gdk" KeyId)" "$arn"
	expect_eq "generate-data-key: 32-byte data key" "$(stat -c %s "$work/gdk.plain")" 32
	if must_run "decrypt (fileb://)" "$work/dec" kms decrypt \
		--ciphertext-blob "fileb://$work/gdk.blob" --encryption-context column=email,tenant=42; then
		b64file "$work/dec" Plaintext "$work/dec.plain"
		if cmp -s "$work/gdk.plain" "$work/dec.plain"; then
			ok "decrypt: the generated data key comes back"
		else
			not_ok "decrypt: a different plaintext came back"
		fi
		expect_eq "decrypt: KeyId is the key ARN" "$(jget "$work/dec" KeyId)" "$arn"
		expect_eq "decrypt: EncryptionAlgorithm" "$(jget "$work/dec" EncryptionAlgorithm)" \
			SYMMETRIC_DEFAULT
	fi
	must_fail "decrypt with another encryption context" InvalidCiphertextException \
		"$work/dec_ctx" kms decrypt --ciphertext-blob "fileb://$work/gdk.blob" \
		--encryption-context tenant=43,column=email
	must_fail "decrypt naming another key" IncorrectKeyException "$work/dec_key" kms decrypt \
		--ciphertext-blob "fileb://$work/gdk.blob" --encryption-context tenant=42,column=email \
		--key-id alias/pgck-test-2

	# ------------------------------------------------------------ re-encrypt
	if must_run "re-encrypt to alias/pgck-test-2" "$work/reenc" kms re-encrypt \
		--ciphertext-blob "fileb://$work/gdk.blob" \
		--source-encryption-context tenant=42,column=email \
		--destination-key-id alias/pgck-test-2; then
		expect_eq "re-encrypt: SourceKeyId, KeyId" \
			"$(jget "$work/reenc" SourceKeyId) $(jget "$work/reenc" KeyId)" "$arn $arn2"
		b64file "$work/reenc" CiphertextBlob "$work/reenc.blob"
		if must_run "decrypt the re-encrypted blob" "$work/dec2" kms decrypt \
			--ciphertext-blob "fileb://$work/reenc.blob"; then
			b64file "$work/dec2" Plaintext "$work/dec2.plain"
			if cmp -s "$work/gdk.plain" "$work/dec2.plain"; then
				ok "re-encrypted blob: same plaintext"
			else
				not_ok "re-encrypted blob: a different plaintext came back"
			fi
			expect_eq "re-encrypted blob: KeyId is alias/pgck-test-2's ARN" \
				"$(jget "$work/dec2" KeyId)" "$arn2"
		fi
	fi
fi

# ---------------------------------------------------------------- encrypt
head -c 3000 /dev/urandom >"$work/secret.bin"
if must_run "encrypt (fileb://, 3000 bytes)" "$work/enc" kms encrypt --key-id "$key_id" \
	--plaintext "fileb://$work/secret.bin"; then
	expect_eq "encrypt: KeyId is the key ARN" "$(jget "$work/enc" KeyId)" "$arn"
	b64file "$work/enc" CiphertextBlob "$work/enc.blob"
	if must_run "decrypt what encrypt made" "$work/dec3" kms decrypt --key-id alias/pgck-test \
		--ciphertext-blob "fileb://$work/enc.blob"; then
		b64file "$work/dec3" Plaintext "$work/dec3.plain"
		if cmp -s "$work/secret.bin" "$work/dec3.plain"; then
			ok "encrypt/decrypt round trip"
		else
			not_ok "encrypt/decrypt round trip: different bytes"
		fi
	fi
fi

# ---------------------------------------------------------------- generate-random
if must_run "generate-random" "$work/rnd" kms generate-random --number-of-bytes 32; then
	b64file "$work/rnd" Plaintext "$work/rnd.bin"
	expect_eq "generate-random: 32 bytes" "$(stat -c %s "$work/rnd.bin")" 32
fi

# ---------------------------------------------------------------- refusals
must_fail "unknown alias" NotFoundException "$work/nf" kms describe-key --key-id alias/pgck-none
SECRET_KEY=wrong-secret must_fail "a wrong secret is refused" InvalidSignatureException \
	"$work/badsig" kms generate-random --number-of-bytes 8
ACCESS_KEY=AKIDPGCKUNKNOWN000000 must_fail "an unknown access key is refused" \
	UnrecognizedClientException "$work/badkey" kms generate-random --number-of-bytes 8

# ---------------------------------------------------------------- temporary credentials
# The CLI fetches them from the emulator's STS, then signs KMS calls with the session token.
if must_run "sts assume-role-with-web-identity" "$work/sts" sts assume-role-with-web-identity \
	--role-arn arn:aws:iam::111122223333:role/pgck-test-role --role-session-name awscli \
	--web-identity-token pgck-test-web-identity-token; then
	ACCESS_KEY=$(jget "$work/sts" Credentials.AccessKeyId)
	SECRET_KEY=$(jget "$work/sts" Credentials.SecretAccessKey)
	SESSION_TOKEN=$(jget "$work/sts" Credentials.SessionToken)
	case $ACCESS_KEY in
	ASIA*) ok "sts: temporary access key $ACCESS_KEY" ;;
	*) not_ok "sts: access key $ACCESS_KEY is not temporary" ;;
	esac
	if must_run "describe-key with the session token" "$work/sts_kms" kms describe-key \
		--key-id alias/pgck-test; then
		expect_eq "describe-key with the session token" \
			"$(jget "$work/sts_kms" KeyMetadata.Arn)" "$arn"
	fi
	SESSION_TOKEN= must_fail "the temporary key without its token" UnrecognizedClientException \
		"$work/sts_notoken" kms describe-key --key-id alias/pgck-test
fi

echo "1..$n"
if [ "$failed" -ne 0 ]; then
	echo "# $failed of $n checks failed"
	exit 1
fi
echo "# all $n checks passed"
