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
    int md_clone_tree(const char *path, int recursive, int userns_fd);
    int md_move_mount(int from_fd, const char *target);
    int md_set_fsids(unsigned int fsuid, unsigned int fsgid);
    int md_mount_as(const char *source, const char *target, const char *fstype,
                    unsigned long flags, const char *data, unsigned int fsuid,
                    unsigned int fsgid);
    """
)

ffibuilder.set_source(
    "minidock._native",
    r"""
    #define _GNU_SOURCE
    #include <dlfcn.h>
    #include <errno.h>
    #include <fcntl.h>
    #include <sched.h>
    #include <signal.h>
    #include <stdint.h>
    #include <stdio.h>
    #include <string.h>
    #include <unistd.h>
    #include <net/if.h>
    #include <linux/filter.h>
    #include <linux/seccomp.h>
    #include <sys/fsuid.h>
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
    #ifndef SYS_open_tree
    #define SYS_open_tree 428
    #endif
    #ifndef SYS_move_mount
    #define SYS_move_mount 429
    #endif
    #ifndef SYS_mount_setattr
    #define SYS_mount_setattr 442
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

    /* A detached copy of the mount tree at path (open_tree with OPEN_TREE_CLONE, 5.2+;
       AT_RECURSIVE: with the mounts below it, as a recursive bind would take), optionally
       idmapped through the user namespace open at userns_fd (mount_setattr with
       MOUNT_ATTR_IDMAP, 5.12+; the filesystem must support it). Returns the mount's fd:
       attach it with md_move_mount, or name it as /proc/self/fd/N. */
    struct md_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

    static int md_clone_tree(const char *path, int recursive, int userns_fd)
    {
        struct md_mount_attr attr;
        unsigned int flags = 1 /* OPEN_TREE_CLONE */ | 02000000 /* OPEN_TREE_CLOEXEC */;
        int fd, saved;
        if (recursive)
            flags |= 0x8000;  /* AT_RECURSIVE */
        fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, flags);
        if (fd < 0 || userns_fd < 0)
            return fd;
        memset(&attr, 0, sizeof attr);
        attr.attr_set = 0x00100000;  /* MOUNT_ATTR_IDMAP */
        attr.userns_fd = (uint64_t)userns_fd;
        if (syscall(SYS_mount_setattr, fd, "", 0x1000 /* AT_EMPTY_PATH */
                    | (recursive ? 0x8000 : 0), &attr, sizeof attr) < 0) {
            saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        return fd;
    }

    /* Attach a detached mount (md_clone_tree's fd) at target: move_mount, 5.2+; the target
       may be a /proc/self/fd/N link to a directory opened O_PATH. */
    static int md_move_mount(int from_fd, const char *target)
    {
        return (int)syscall(SYS_move_mount, from_fd, "", AT_FDCWD, target,
                            4 /* MOVE_MOUNT_F_EMPTY_PATH */ | 0x10 /* T_SYMLINKS */);
    }

    /* mount(2) with the filesystem ids of the caller set to fsuid/fsgid for the call, and
       the capabilities setfsuid drops from the effective set (CAP_CHOWN, CAP_DAC_*,
       CAP_FOWNER, CAP_FSETID) raised again: overlayfs records its mounter's credentials and
       creates its work dir and copy-ups with them, so over idmapped layers the mounter
       must be an id those layers map (the container's root), with root's powers. The
       thread's ids and effective set are restored before returning. */
    struct md_cap_header { uint32_t version; int pid; };
    struct md_cap_data { uint32_t effective, permitted, inheritable; };

    static int md_mount_as(const char *source, const char *target, const char *fstype,
                           unsigned long flags, const char *data, unsigned int fsuid,
                           unsigned int fsgid)
    {
        struct md_cap_header hdr = { 0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0 };
        struct md_cap_data caps[2], raised[2];
        int ret, saved;
        if (syscall(SYS_capget, &hdr, caps) < 0)
            return -1;
        setfsgid(fsgid);
        setfsuid(fsuid);
        raised[0] = caps[0];
        raised[1] = caps[1];
        raised[0].effective = raised[0].permitted;
        raised[1].effective = raised[1].permitted;
        ret = (int)syscall(SYS_capset, &hdr, raised);
        if (ret == 0)
            ret = mount(source, target, fstype, flags, data);
        saved = errno;
        setfsuid(geteuid());
        setfsgid(getegid());
        syscall(SYS_capset, &hdr, caps);
        errno = saved;
        return ret;
    }

    /* The calling thread's filesystem ids, with the effective capabilities setfsuid takes
       away raised again from the permitted set (see md_mount_as); (euid, egid) undoes it. */
    static int md_set_fsids(unsigned int fsuid, unsigned int fsgid)
    {
        struct md_cap_header hdr = { 0x20080522, 0 };
        struct md_cap_data caps[2];
        if (syscall(SYS_capget, &hdr, caps) < 0)
            return -1;
        setfsgid(fsgid);
        setfsuid(fsuid);
        caps[0].effective = caps[0].permitted;
        caps[1].effective = caps[1].permitted;
        return (int)syscall(SYS_capset, &hdr, caps);
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
