ARG BASE=busybox
ARG TAG=latest
FROM ${BASE}:${TAG} AS builder
WORKDIR /src
RUN echo "int main(){}" > main.c
FROM builder AS tester
RUN true
FROM scratch
COPY --from=builder /src/main.c /main.c
COPY --from=busybox:latest /bin/busybox /busybox
CMD ["/busybox", "sh"]
