#!/bin/sh
# Writes every secret docker-compose.yml mounts into a new directory (default ./secrets, git-ignored), one file
# each, named as the Compose secret: the passwords, the URLs built from them, and the keys. deploy/README.md, 2.
#
#   docker build -f deploy/Dockerfile -t clientvault:local .   # the derived keys are computed by the image
#   deploy/compose-secrets.sh [DIR]
#
# CLIENTVAULT: the command that runs `clientvault` (default: the image, `docker run --rm -i clientvault:local`).
# It never overwrites: a system's secrets are changed one at a time (deploy/README.md, 6).
set -eu
dir=${1:-secrets}
clientvault=${CLIENTVAULT:-docker run --rm -i clientvault:local}
if [ -e "$dir" ]; then
  echo "$dir exists: not overwriting a system's secrets" >&2
  exit 1
fi
umask 077
mkdir -m 700 "$dir"

put() { printf '%s' "$2" > "$dir/$1"; }
key() { python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'; }  # 32 random bytes

# URL-safe: it goes into the database URL.
postgres_password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
put postgres_password "$postgres_password"
put database_url "postgresql://clientvault:$postgres_password@postgres:5432/clientvault"
# One NATS user per process, and the operator (the migration). nats-server parses a password from its environment
# as a config value: a letter first, then hex (section 3.3).
for user in operator gateway auth clients vault audit; do
  password=$(python3 -c 'import secrets; print("p" + secrets.token_hex(32))')
  put "nats_${user}_password" "$password"
  put "nats_${user}_url" "nats://$user:$password@nats:4222"
done
put token_signing_key "$(key)"  # 32 random bytes are an Ed25519 private key
put mfa_key "$(key)"  # seals the users' TOTP seeds (back it up with the database)
put keks "v1:$(key)"            # CLIENTVAULT_KEK_ACTIVE=v1 (.env)
# The gateway's request-context key, and each service's own key derived from it.
context_key=$(key)
put context_key "$context_key"
for service in auth clients vault audit; do
  put "${service}_context_verify_key" "$(printf %s "$context_key" | $clientvault context-key derive --service "$service")"
done
# Each audit producer's event signing key (each mounted by its producer alone), and their public halves as the
# audit service trusts them (vault:<base64>,auth:<base64>,audit:<base64>,clients:<base64>).
public_keys=""
for producer in vault auth audit clients; do
  event_key=$(key)
  put "${producer}_event_signing_key" "$event_key"
  public_keys="$public_keys${public_keys:+,}$(printf %s "$event_key" | $clientvault public-key --producer "$producer")"
done
put event_public_keys "$public_keys"
# The vault's rotation-tasks identity (issued by the migration with it; the vault signs in with it).
put rotation_tasks_password "$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"

# The containers' user (10001) reads them through read-only bind mounts; the directory (0700) keeps everyone else
# on this host out.
chmod 0444 "$dir"/*
echo "secrets written to $dir"
