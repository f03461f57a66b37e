FROM busybox AS base
COPY data.txt /data.txt

FROM base AS middle
RUN echo middle > /middle.txt

FROM middle AS last
RUN echo last > /last.txt
