FROM busybox
ENV A
