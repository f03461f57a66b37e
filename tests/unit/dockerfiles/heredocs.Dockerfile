FROM busybox
RUN <<EOF
echo hello
echo world
EOF
RUN <<-EOT bash
	set -e
	echo tabs
	EOT
COPY <<'CONF' /etc/app.conf
literal $NOT_EXPANDED
CONF
RUN <<A cat /dev/stdin && <<B cat
first
A
second
B
RUN 3<<X cat /proc/self/fd/3
on fd three
X
RUN echo no heredoc here << not
