FROM --platform=linux/amd64 busybox AS build
RUN --mount=type=cache,target=/root/.cache --network=none echo hi
COPY --from=build --link /out /out
COPY --chown="user name":group a b
ADD --checksum=sha256:abc http://x/y /z
COPY -- --dash-file /dst
FROM build
