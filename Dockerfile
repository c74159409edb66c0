# The daemon alone in an empty image: one static binary, no shell, no libc, no CA bundle.
#
# Build the static binary first, then send only it (and this file) as the build context. Use
# BuildKit: the legacy builder gives a FROM scratch image the host's platform once an ARG follows.
#
#   cargo build --release --target x86_64-unknown-linux-musl
#   tar -c Dockerfile target/x86_64-unknown-linux-musl/release/registrator |
#       DOCKER_BUILDKIT=1 docker build -t registrator -
#
# For a 64-bit ARM host, build with cross/build.sh and pass its path:
#
#   cross/build.sh build aarch64-unknown-linux-musl
#   tar -c Dockerfile target/pi/aarch64-unknown-linux-musl/release/registrator |
#       DOCKER_BUILDKIT=1 docker build --platform linux/arm64 \
#           --build-arg BIN=target/pi/aarch64-unknown-linux-musl/release/registrator -t registrator -
#
# Run it with the engine's socket at /tmp/docker.sock (where the daemon looks first) and the
# host's network, so the registry on localhost is reachable and the host's name is used:
#
#   docker run -d --name registrator --net=host \
#       -v /var/run/docker.sock:/tmp/docker.sock registrator -ip 10.0.0.5 consul://localhost:8500
FROM scratch
ARG BIN=target/x86_64-unknown-linux-musl/release/registrator
COPY ${BIN} /registrator
ENTRYPOINT ["/registrator"]
CMD ["-help"]
