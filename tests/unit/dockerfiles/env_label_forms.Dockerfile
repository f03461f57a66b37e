FROM busybox
ENV A=1 B="two words" C='single $quoted' D=escaped\ space E=
ENV F "legacy quoted"
LABEL "com.example.key with space"="value" plain=1
LABEL multi.line="a \
b"
ARG A="x y" B C=$A
ENV X=${Y:-default} Z=$X
