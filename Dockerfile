# syntax=docker/dockerfile:1
# The operator image: `deepseek-operator` as a static musl binary on distroless/static,
# running as the non-root uid 65532 (the chart's Deployment runs it with a read-only root
# filesystem and all capabilities dropped).
# Build from the repository root:
#   docker build -t ghcr.io/deepseek-operator/deepseek-operator:<version> .
# The Kubernetes client uses rustls with ring; ring's C and assembly parts need a C
# compiler and musl-dev, nothing else (no OpenSSL).

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p deepseek-operator --bin deepseek-operator \
 && install -m 0755 target/release/deepseek-operator /deepseek-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /deepseek-operator /usr/local/bin/deepseek-operator
USER 65532:65532
# /metrics, /healthz and /readyz (pass --metrics-bind=0.0.0.0:9090 in a pod).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/deepseek-operator"]
CMD ["run"]
