#!/usr/bin/env bash
# Builds the Dockerfile's runtime stage with podman and runs what it produced:
#   1. a Debian base made here with debootstrap stands in for distroless (base images
#      cannot be pulled on the project's machines), and a locally built binary for the
#      builder stage (BINARY build argument);
#   2. `podman build --isolation chroot --target runtime`;
#   3. the image's filesystem is mounted (`podman image mount`) and its binary run from it
#      with chroot, as the image's non-root user: `check-config` on the image's own
#      configuration, then `serve`, which must answer an authenticated, proxied request.
# Prints the image size. Needs root, podman, debootstrap, curl and python3.
#
#   examples/container/test.sh [BINARY]     (default: target/release/portcullis if built,
#                                            else target/debug/portcullis)
set -euo pipefail
cd "$(dirname "$0")/../.."

binary=${1:-}
if [ -z "$binary" ]; then
  binary=target/release/portcullis
  [ -x "$binary" ] || binary=target/debug/portcullis
fi
[ -x "$binary" ] || { echo "no binary at $binary: cargo build first" >&2; exit 1; }
for tool in podman debootstrap curl python3 chroot; do
  command -v "$tool" >/dev/null || { echo "container test needs $tool" >&2; exit 1; }
done

work=$(mktemp -d)
tag="localhost/portcullis-test:$$"
mnt=""
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$mnt" ]; then
    umount "$mnt/var/lib/portcullis" 2>/dev/null || true
    podman image unmount "$tag" >/dev/null 2>&1 || true
  fi
  podman rmi -f "$tag" "localhost/portcullis-binary:$$" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The base: a minimal Debian, made once per machine and kept as an image.
base=localhost/portcullis-debootstrap:bookworm
if ! podman image exists "$base"; then
  echo "== debootstrap a bookworm base"
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$work/rootfs" -c . | podman import -q - "$base" >/dev/null
  rm -rf "$work/rootfs"
fi

# The binary, as the builder stage would leave it.
mkdir -p "$work/binary/out/usr/local/bin" "$work/binary/out/var/lib/portcullis"
strip -o "$work/binary/out/usr/local/bin/portcullis" "$binary"
printf 'FROM scratch\nCOPY out/ /out/\n' > "$work/binary/Containerfile"
podman build -q --isolation chroot -t "localhost/portcullis-binary:$$" "$work/binary" >/dev/null

# 2. The runtime stage.
echo "== podman build --target runtime"
podman build -q --isolation chroot --target runtime \
  --build-arg BINARY="localhost/portcullis-binary:$$" \
  --build-arg RUNTIME_IMAGE="$base" \
  -t "$tag" -f Dockerfile . >/dev/null
user=$(podman image inspect -f '{{.Config.User}}' "$tag")
entrypoint=$(podman image inspect -f '{{json .Config.Entrypoint}}' "$tag")
volumes=$(podman image inspect -f '{{json .Config.Volumes}}' "$tag")
[ "$user" = "65532:65532" ] || { echo "image user is '$user', not 65532:65532" >&2; exit 1; }
[ "$entrypoint" = '["portcullis"]' ] || { echo "entrypoint is $entrypoint" >&2; exit 1; }
case "$volumes" in *'/var/lib/portcullis'*) ;; *) echo "no volume: $volumes" >&2; exit 1;; esac

# 3. Run the image's binary from the image's filesystem, as its user.
mnt=$(podman image mount "$tag")
run() { chroot --userspec=65532:65532 "$mnt" /usr/local/bin/portcullis "$@"; }
echo "== check-config (the image's own configuration)"
run check-config /etc/portcullis/portcullis.toml

# The volume: a writable directory owned by the runtime user, mounted where the image
# declares it (the image itself stays read-only).
mkdir -p "$work/volume"
chown 65532:65532 "$work/volume"
mount --bind "$work/volume" "$mnt/var/lib/portcullis"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
app_port=$(free_port)
listen_port=$(free_port)
# The app: answers with the identity headers it received.
python3 - "$app_port" <<'PY' &
import http.server, json, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
PY
pids+=($!)
cat > "$work/volume/test.toml" <<EOF
[server]
listen = "127.0.0.1:$listen_port"
[store]
database_url = "sqlite:///var/lib/portcullis/portcullis.db"
[tokens]
key_dir = "/var/lib/portcullis"
[cookies]
secure = false
[[routes]]
name = "app"
prefix = "/app"
upstream = "http://127.0.0.1:$app_port"
EOF
echo "== serve from the image, as 65532"
chroot --userspec=65532:65532 "$mnt" /usr/local/bin/portcullis serve \
  --config /var/lib/portcullis/test.toml 2>"$work/serve.log" &
pids+=($!)
base_url="http://127.0.0.1:$listen_port"
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "$base_url/.well-known/jwks.json" && break
  sleep 0.1
done
token=$(curl -fs -X POST "$base_url/api/v1/auth/register" -H 'content-type: application/json' \
  -d '{"email":"container@example.com","password":"correct horse battery","full_name":"C"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
seen=$(curl -fs "$base_url/app/orders" -H "authorization: Bearer $token" -H 'x-user-email: spoofed@example.com')
echo "$seen" | python3 -c '
import json, sys
seen = json.load(sys.stdin)
assert seen.get("x-user-email") == "container@example.com", seen
assert seen.get("x-user-id", "").startswith("user_"), seen
print("proxied as", seen["x-user-email"])'
status=$(curl -s -o /dev/null -w '%{http_code}' "$base_url/app/orders")
[ "$status" = 401 ] || { echo "unauthenticated request got $status" >&2; exit 1; }
# State went to the volume, written by the non-root user.
owner=$(stat -c '%u' "$work/volume/portcullis.db")
[ "$owner" = 65532 ] || { echo "database owned by $owner" >&2; exit 1; }

size=$(podman image inspect -f '{{.Size}}' "$tag")
base_size=$(podman image inspect -f '{{.Size}}' "$base")
echo "== ok: image $(( size / 1000000 )) MB, of which Portcullis's layers $(( (size - base_size) / 1000000 )) MB (the rest is the base)"
