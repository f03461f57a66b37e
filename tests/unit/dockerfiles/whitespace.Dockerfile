FROM busybox


   
RUN	echo	tabs
	CMD  [ "a" ]
