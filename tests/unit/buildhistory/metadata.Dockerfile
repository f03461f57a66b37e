FROM busybox
ENV A=1 B="two words" C=$A
ENV LEGACY some value
LABEL a=1 "b c"="d e" multi="x y"
MAINTAINER Someone <a@b.c>
ARG V=3
ARG NOVAL
USER nobody:nogroup
EXPOSE 80 53/udp 443
VOLUME /data /logs
VOLUME ["/json"]
STOPSIGNAL SIGKILL
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo hi
CMD ["nginx", "-g", "daemon off;"]
CMD echo shell form
ENTRYPOINT ["/e.sh", "x"]
ENTRYPOINT run me
WORKDIR /tmp
WORKDIR rel/dir
