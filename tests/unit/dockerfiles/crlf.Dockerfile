FROM busybox
RUN echo crlf \
    continued
CMD ["x"]
