FROM busybox
RUN ["a", 1]
