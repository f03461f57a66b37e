# syntax=docker/dockerfile:1
# check=skip=JSONArgsRecommended
# escape=\
FROM scratch
# escape=`
COPY a b
