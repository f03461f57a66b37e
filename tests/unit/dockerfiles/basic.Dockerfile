# a comment before anything
FROM busybox:latest AS base
LABEL maintainer="me <me@example.com>" version=1.0
ENV PATH=/usr/local/bin:$PATH LANG=C.UTF-8
ENV legacy form with spaces
ARG VERSION=1.2.3
ARG NOVALUE
WORKDIR /app
COPY . /app/
COPY --chown=1000:1000 --chmod=755 a.sh b.sh /usr/local/bin/
ADD https://example.com/x.tar.gz /opt/
RUN set -eux; \
    apk add --no-cache curl; \
    # a comment inside the continuation
    echo done
EXPOSE 80 443/tcp 53/udp
VOLUME /data /logs
VOLUME ["/json", "/volume"]
USER nobody:nogroup
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD wget -q -O- http://localhost/ || exit 1
ENTRYPOINT ["/entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
