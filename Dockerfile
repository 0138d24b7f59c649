# syntax=docker/dockerfile:1
# Portcullis as a container image. Base images are build arguments so they can be replaced
# (a mirror, a pinned digest, a local base):
#   RUST_IMAGE     the builder: the official Rust image, at least the crate's rust-version
#   RUNTIME_IMAGE  the runtime: distroless `cc` (glibc and libgcc, no shell), non-root
#   BINARY         where the binary comes from: the `builder` stage, or an image holding
#                  /out/usr/local/bin/portcullis (examples/container/test.sh builds one)
ARG RUST_IMAGE=docker.io/library/rust:1.88-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY=builder

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Dependencies first, in their own layer: this only reruns when Cargo.toml or Cargo.lock
# change. Stub targets stand in for the sources.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests/it examples \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/hot_path.rs && echo 'fn main() {}' > tests/it/main.rs \
    && cargo build --release --locked --bin portcullis \
    && rm -rf src target/release/.fingerprint/portcullis-* target/release/deps/portcullis-* \
       target/release/deps/libportcullis-*
COPY src ./src
COPY migrations ./migrations
RUN cargo build --release --locked --bin portcullis \
    && mkdir -p /out/usr/local/bin /out/var/lib/portcullis \
    && strip -o /out/usr/local/bin/portcullis target/release/portcullis

FROM ${BINARY} AS binary

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=binary /out/usr/local/bin/portcullis /usr/local/bin/portcullis
# The one writable place, owned by the runtime user.
COPY --from=binary --chown=65532:65532 /out/var/lib/portcullis /var/lib/portcullis
COPY config/container.toml /etc/portcullis/portcullis.toml
USER 65532:65532
VOLUME ["/var/lib/portcullis"]
# Client traffic, and the operator listener (/healthz, /readyz, /metrics).
EXPOSE 8080 9090
ENTRYPOINT ["portcullis"]
CMD ["serve", "--config", "/etc/portcullis/portcullis.toml"]
