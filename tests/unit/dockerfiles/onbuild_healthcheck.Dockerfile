FROM busybox
ONBUILD RUN echo triggered
ONBUILD COPY --from=x a b
ONBUILD CMD ["a"]
HEALTHCHECK NONE
HEALTHCHECK CMD ["curl", "-f", "http://x/"]
HEALTHCHECK --start-period=1s CMD true
MAINTAINER Someone <a@b.c>
