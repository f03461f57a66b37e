"""cffi build script for minidock._native (API mode, compiled when the package is installed).

Mechanism only: thin entry points to the syscalls Python's os module lacks. Policy (which
namespaces, which mounts, in which order) lives in minidock.runtime; typed wrappers that
turn failures into OSError live in minidock.linux, the only importer of this module.
"""

from cffi import FFI

ffibuilder = FFI()

ffibuilder.cdef(
    """
    #define CLONE_NEWNS ...
    #define CLONE_NEWUTS ...
    #define CLONE_NEWIPC ...
    #define CLONE_NEWNET ...
    #define CLONE_NEWPID ...
    #define CLONE_NEWUSER ...
    #define CLONE_NEWCGROUP ...
    #define CLONE_FS ...

    #define MS_RDONLY ...
    #define MS_NOSUID ...
    #define MS_NODEV ...
    #define MS_NOEXEC ...
    #define MS_SYNCHRONOUS ...
    #define MS_REMOUNT ...
    #define MS_MANDLOCK ...
    #define MS_DIRSYNC ...
    #define MS_NOATIME ...
    #define MS_NODIRATIME ...
    #define MS_BIND ...
    #define MS_MOVE ...
    #define MS_REC ...
    #define MS_SILENT ...
    #define MS_UNBINDABLE ...
    #define MS_PRIVATE ...
    #define MS_SLAVE ...
    #define MS_SHARED ...
    #define MS_RELATIME ...
    #define MS_STRICTATIME ...
    #define MS_LAZYTIME ...

    #define MNT_FORCE ...
    #define MNT_DETACH ...
    #define MNT_EXPIRE ...
    #define UMOUNT_NOFOLLOW ...

    #define RESOLVE_NO_XDEV ...
    #define RESOLVE_NO_MAGICLINKS ...
    #define RESOLVE_NO_SYMLINKS ...
    #define RESOLVE_BENEATH ...
    #define RESOLVE_IN_ROOT ...

    int unshare(int flags);
    int setns(int fd, int nstype);
    int mount(const char *source, const char *target, const char *filesystemtype,
              unsigned long mountflags, const void *data);
    int umount2(const char *target, int flags);
    int mknod(const char *pathname, unsigned int mode, unsigned long dev);
    unsigned long md_makedev(unsigned int major, unsigned int minor);
    int sethostname(const char *name, size_t len);
    int md_pivot_root(const char *new_root, const char *put_old);
    int md_close_range(unsigned int first, unsigned int last, unsigned int flags);
    int md_openat2(int dirfd, const char *path, unsigned long long flags,
                   unsigned long long mode, unsigned long long resolve);
    int md_link_up(const char *ifname);
    int md_seccomp_load(const void *filter, unsigned short len, unsigned int flags);
    int md_fork_into_cgroup(int cgroup_fd);
    int md_nft_run(const char *commands, char *out, size_t outlen, char *err, size_t errlen);
    int md_bpf_load_device_filter(const void *insns, unsigned int count, const char *license,
                                  char *log, unsigned int loglen);
    int md_bpf_attach_device_filter(int cgroup_fd, int prog_fd);
    """
)

ffibuilder.set_source(
    "minidock._native",
    r"""
    #define _GNU_SOURCE
    #include <dlfcn.h>
    #include <errno.h>
    #include <sched.h>
    #include <signal.h>
    #include <stdint.h>
    #include <stdio.h>
    #include <string.h>
    #include <unistd.h>
    #include <net/if.h>
    #include <linux/filter.h>
    #include <linux/seccomp.h>
    #include <sys/ioctl.h>
    #include <sys/mount.h>
    #include <sys/prctl.h>
    #include <sys/socket.h>
    #include <sys/stat.h>
    #include <sys/syscall.h>
    #include <sys/sysmacros.h>

    /* Older libc headers lack the numbers of syscalls added after 5.x; since 424 the
       numbers are the same on every architecture. */
    #ifndef SYS_close_range
    #define SYS_close_range 436
    #endif
    #ifndef SYS_openat2
    #define SYS_openat2 437
    #endif
    #ifndef SYS_clone3
    #define SYS_clone3 435
    #endif
    #ifndef CLONE_INTO_CGROUP
    #define CLONE_INTO_CGROUP 0x200000000ULL
    #endif
    #ifndef CLONE_NEWCGROUP
    #define CLONE_NEWCGROUP 0x02000000
    #endif
    #ifndef RESOLVE_NO_XDEV
    #define RESOLVE_NO_XDEV 0x01
    #define RESOLVE_NO_MAGICLINKS 0x02
    #define RESOLVE_NO_SYMLINKS 0x04
    #define RESOLVE_BENEATH 0x08
    #define RESOLVE_IN_ROOT 0x10
    #endif
    #ifndef SYS_seccomp
    #define SYS_seccomp __NR_seccomp
    #endif
    #ifndef MS_LAZYTIME
    #define MS_LAZYTIME (1 << 25)
    #endif

    struct md_open_how { uint64_t flags; uint64_t mode; uint64_t resolve; };

    /* struct clone_args up to the field clone3 gained in 5.7 (cgroup). */
    struct md_clone_args {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
                 set_tid, set_tid_size, cgroup;
    };

    /* fork(), except that the child starts life in the cgroup2 directory open at cgroup_fd
       (clone3 with CLONE_INTO_CGROUP, 5.7+). Nothing migrates, so the cgroup write lock
       and the RCU grace period a write to cgroup.procs waits for are never taken. Like
       fork with no stack given: the child returns 0 here on a copy of the caller's stack.
       Python's own at-fork hooks do not run, so the caller must be single-threaded. */
    static int md_fork_into_cgroup(int cgroup_fd)
    {
        struct md_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_INTO_CGROUP;
        args.exit_signal = SIGCHLD;
        args.cgroup = (uint64_t)cgroup_fd;
        return (int)syscall(SYS_clone3, &args, sizeof args);
    }

    static unsigned long md_makedev(unsigned int major, unsigned int minor)
    {
        return makedev(major, minor);
    }

    static int md_pivot_root(const char *new_root, const char *put_old)
    {
        return (int)syscall(SYS_pivot_root, new_root, put_old);
    }

    static int md_close_range(unsigned int first, unsigned int last, unsigned int flags)
    {
        return (int)syscall(SYS_close_range, first, last, flags);
    }

    static int md_openat2(int dirfd, const char *path, unsigned long long flags,
                          unsigned long long mode, unsigned long long resolve)
    {
        struct md_open_how how;
        memset(&how, 0, sizeof how);
        how.flags = flags;
        how.mode = mode;
        how.resolve = resolve;
        return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    }

    /* Run nft commands through libnftables, loaded with dlopen when first needed: no build
       dependency on its headers, and a missing library is an answer (-2), not a failure to
       import. 0 = applied (what it printed, a listing, in out); -1 = nft refused, its
       message in err; -2 = no libnftables. Output longer than outlen is cut. */
    static int md_nft_run(const char *commands, char *out, size_t outlen, char *err,
                          size_t errlen)
    {
        static void *handle;
        static void *(*ctx_new)(unsigned int);
        static void (*ctx_free)(void *);
        static int (*buffer_output)(void *);
        static int (*buffer_error)(void *);
        static const char *(*output_buffer)(void *);
        static const char *(*error_buffer)(void *);
        static int (*run)(void *, const char *);
        void *ctx;
        const char *msg;
        int ret;
        if (!handle) {
            handle = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
            if (!handle) return -2;
            ctx_new = (void *(*)(unsigned int))dlsym(handle, "nft_ctx_new");
            ctx_free = (void (*)(void *))dlsym(handle, "nft_ctx_free");
            buffer_output = (int (*)(void *))dlsym(handle, "nft_ctx_buffer_output");
            buffer_error = (int (*)(void *))dlsym(handle, "nft_ctx_buffer_error");
            output_buffer = (const char *(*)(void *))dlsym(handle, "nft_ctx_get_output_buffer");
            error_buffer = (const char *(*)(void *))dlsym(handle, "nft_ctx_get_error_buffer");
            run = (int (*)(void *, const char *))dlsym(handle, "nft_run_cmd_from_buffer");
            if (!ctx_new || !ctx_free || !buffer_output || !buffer_error || !output_buffer
                || !error_buffer || !run) {
                handle = NULL;
                return -2;
            }
        }
        ctx = ctx_new(0);
        if (!ctx) return -2;
        buffer_output(ctx);
        buffer_error(ctx);
        ret = run(ctx, commands);
        if (outlen) {
            msg = output_buffer(ctx);
            snprintf(out, outlen, "%s", msg ? msg : "");
        }
        if (errlen) {
            msg = error_buffer(ctx);
            snprintf(err, errlen, "%s", msg ? msg : "");
        }
        ctx_free(ctx);
        return ret == 0 ? 0 : -1;
    }

    /* Set IFF_UP on a link of the calling thread's network namespace (the loopback of a
       fresh namespace starts down). An ioctl is all it takes; no netlink needed. */
    static int md_link_up(const char *ifname)
    {
        struct ifreq ifr;
        int fd, ret = -1, saved;
        if (strlen(ifname) >= IFNAMSIZ) { errno = EINVAL; return -1; }
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        memset(&ifr, 0, sizeof ifr);
        strcpy(ifr.ifr_name, ifname);
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
            ifr.ifr_flags |= IFF_UP;
            ret = ioctl(fd, SIOCSIFFLAGS, &ifr);
        }
        saved = errno;
        close(fd);
        errno = saved;
        return ret;
    }

    /* Install a classic BPF seccomp filter (struct sock_filter[len], built by the caller).
       seccomp(2) is the interface since 3.17 and the only one that takes flags; the older
       prctl(PR_SET_SECCOMP) does the same without them. Either needs no_new_privs set or
       CAP_SYS_ADMIN in the caller's user namespace. */
    /* cgroup v2 device control: load an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE
       (classic-free eBPF instructions, 8 bytes each) and attach it to a cgroup directory's
       fd. The attr layouts are the kernel ABI's (union bpf_attr, the fields these two
       commands read), written here so that old linux/bpf.h headers do not matter. */
    struct md_bpf_load_attr {
        uint32_t prog_type, insn_cnt;
        uint64_t insns, license;
        uint32_t log_level, log_size;
        uint64_t log_buf;
        uint32_t kern_version, prog_flags;
    };
    struct md_bpf_attach_attr {
        uint32_t target_fd, attach_bpf_fd, attach_type, attach_flags;
    };

    static int md_bpf_load_device_filter(const void *insns, unsigned int count,
                                         const char *license, char *log, unsigned int loglen)
    {
        union { struct md_bpf_load_attr a; char pad[128]; } attr;
        memset(&attr, 0, sizeof(attr));
        attr.a.prog_type = 15;  /* BPF_PROG_TYPE_CGROUP_DEVICE */
        attr.a.insn_cnt = count;
        attr.a.insns = (uint64_t)(uintptr_t)insns;
        attr.a.license = (uint64_t)(uintptr_t)license;
        if (log != NULL && loglen > 0) {
            attr.a.log_level = 1;
            attr.a.log_size = loglen;
            attr.a.log_buf = (uint64_t)(uintptr_t)log;
            log[0] = 0;
        }
        return (int)syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, &attr, sizeof(attr));
    }

    static int md_bpf_attach_device_filter(int cgroup_fd, int prog_fd)
    {
        union { struct md_bpf_attach_attr a; char pad[128]; } attr;
        memset(&attr, 0, sizeof(attr));
        attr.a.target_fd = (uint32_t)cgroup_fd;
        attr.a.attach_bpf_fd = (uint32_t)prog_fd;
        attr.a.attach_type = 6;  /* BPF_CGROUP_DEVICE */
        attr.a.attach_flags = 2;  /* BPF_F_ALLOW_MULTI */
        return (int)syscall(SYS_bpf, 8 /* BPF_PROG_ATTACH */, &attr, sizeof(attr));
    }

    static int md_seccomp_load(const void *filter, unsigned short len, unsigned int flags)
    {
        struct sock_fprog prog;
        long ret;
        prog.len = len;
        prog.filter = (struct sock_filter *)filter;
        ret = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
        if (ret < 0 && errno == ENOSYS && flags == 0)
            ret = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
        return (int)ret;
    }
    """,
    libraries=["dl"],  # dlopen lives in libc since glibc 2.34; older ones need libdl
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
