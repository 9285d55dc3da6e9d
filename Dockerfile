# hookrelay: a small, non-root image with the one static-ish binary.
#   docker build -t hookrelay .
#   docker run -p 8080:8080 -v hookrelay-data:/var/lib/hookrelay/data hookrelay

FROM rust:1.95-slim-bookworm AS build
# librdkafka (the Kafka destinations' client) is compiled from source: it needs make
# and a C++ compiler beside the C one.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
RUN cargo build --release --locked --bin hookrelay

FROM debian:bookworm-slim
# HTTP destinations use TLS roots compiled in (rustls); the SQS and AMQP clients read
# the system's, from ca-certificates.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/hookrelay hookrelay \
 && mkdir -p /var/lib/hookrelay/data \
 && chown -R hookrelay:hookrelay /var/lib/hookrelay
COPY --from=build /src/target/release/hookrelay /usr/local/bin/hookrelay
USER hookrelay
WORKDIR /var/lib/hookrelay
ENV HOOKRELAY_DATABASE=sqlite:///var/lib/hookrelay/data/hookrelay.db \
    HOOKRELAY_LISTEN=0.0.0.0:8080
EXPOSE 8080
VOLUME ["/var/lib/hookrelay/data"]
ENTRYPOINT ["hookrelay"]
CMD ["serve"]
