FROM busybox
BOGUS something here
FROM
WORKDIR
