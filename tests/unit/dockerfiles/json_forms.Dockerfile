FROM busybox
CMD ["sh", "-c", "echo $HOME"]
CMD [ "spaced" , "out" ]
CMD ["trailing"] garbage after
CMD [not json
CMD ["unterminated"
ENTRYPOINT exec top -b
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN ["echo", "a \"quoted\" word", "unicode é"]
COPY ["file with space", "/dst dir/"]
ADD [ "a", "b" ]
RUN []
