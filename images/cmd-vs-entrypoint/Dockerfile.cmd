# CMD: the default command. Arguments after the image name replace it entirely.
#   minidock build -t greet-cmd -f images/cmd-vs-entrypoint/Dockerfile.cmd images/cmd-vs-entrypoint
#   minidock run --rm greet-cmd                  -> hello from CMD
#   minidock run --rm greet-cmd echo other args  -> other args
FROM busybox
CMD ["echo", "hello from CMD"]
