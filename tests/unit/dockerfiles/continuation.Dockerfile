FROM busybox
RUN echo one \
  two \

  three
RUN echo trailing-blanks \   
    next
RUN echo a \
    # comment
      # indented comment
    b
LABEL a=1 \
      b=2
   RUN    echo   leading blanks
run echo lower case keyword
