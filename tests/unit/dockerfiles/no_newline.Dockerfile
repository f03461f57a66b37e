FROM busybox
RUN echo no-final-newline