# ESCAPE = `
#   syntax   =   docker/dockerfile:1.4  
# escape=\
FROM busybox
RUN echo a `
    b
