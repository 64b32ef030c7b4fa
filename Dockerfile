# Palisade in a small image, as a non-root user:
#   docker build -t palisade .
#   docker run --rm -p 8080:8080 -v "$PWD/palisade.yaml:/etc/palisade/palisade.yaml:ro" palisade
# The config must listen on 0.0.0.0 inside the container (and keep `admin` off published
# ports); `runtime.state_dir: /var/lib/palisade` keeps state in the volume below.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p palisade

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin palisade \
 && mkdir -p /etc/palisade /var/lib/palisade && chown palisade /var/lib/palisade
COPY --from=build /src/target/release/palisade /usr/bin/palisade
USER 10001
VOLUME /var/lib/palisade
ENTRYPOINT ["/usr/bin/palisade"]
CMD ["run", "/etc/palisade/palisade.yaml"]
