/* probe: runs inside a test container and prints, as one JSON object, what the
 * container sees (ids, caps, seccomp, cgroup limits, mounts, namespaces, rlimits).
 * Built static by the test harness (gcc -static); no libc beyond glibc's static archive.
 *
 * Subcommands:
 *   probe info                 JSON report on stdout
 *   probe hog MIB              allocate and touch MIB MiB, then exit 0
 *   probe spin SECONDS         busy-loop for SECONDS of wall time
 *   probe listen PORT          accept one TCP connection on 127.0.0.1:PORT, send "pong\n"
 *   probe connect PORT         connect to 127.0.0.1:PORT (retrying 5 s), print what it reads
 *   probe sleep-ignore-term S  ignore SIGTERM, sleep S seconds
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { putchar('\\'); putchar(c); }
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* First line of a file, trailing newline removed; "" when unreadable. */
static void read_first_line(const char *path, char *buf, size_t len) {
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fgets(buf, (int)len, f)) buf[strcspn(buf, "\n")] = 0;
    fclose(f);
}

static void status_field(const char *key, char *out, size_t len) {
    char line[512];
    size_t klen = strlen(key);
    out[0] = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            char *v = line + klen + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = 0;
            snprintf(out, len, "%s", v);
            break;
        }
    }
    fclose(f);
}

static void kv_file(const char *key, const char *path, int *first) {
    char buf[256];
    read_first_line(path, buf, sizeof buf);
    printf("%s", *first ? "" : ",");
    *first = 0;
    json_str(key);
    putchar(':');
    json_str(buf);
}

static int errno_of(long rc) { return rc < 0 ? errno : 0; }

static int info(void) {
    char buf[512];
    int first = 1;
    printf("{\"uid\":%u,\"gid\":%u,\"euid\":%u", getuid(), getgid(), geteuid());

    gid_t groups[64];
    int n = getgroups(64, groups);
    printf(",\"groups\":[");
    for (int i = 0; i < n; i++) printf("%s%u", i ? "," : "", groups[i]);
    printf("]");

    const char *status_keys[] = {"CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "Seccomp", "NoNewPrivs"};
    for (size_t i = 0; i < sizeof status_keys / sizeof *status_keys; i++) {
        status_field(status_keys[i], buf, sizeof buf);
        printf(",");
        json_str(status_keys[i]);
        printf(":");
        json_str(buf);
    }

    gethostname(buf, sizeof buf);
    printf(",\"hostname\":");
    json_str(buf);
    if (getcwd(buf, sizeof buf)) { printf(",\"cwd\":"); json_str(buf); }
    const char *home = getenv("HOME");
    printf(",\"home\":");
    json_str(home ? home : "");

    printf(",\"cgroup\":{");
    kv_file("memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.limit_in_bytes", &first);
    kv_file("memory.soft_limit_in_bytes", "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes", &first);
    kv_file("memory.memsw.limit_in_bytes", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", &first);
    kv_file("cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", &first);
    kv_file("cpu.cfs_period_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us", &first);
    kv_file("cpu.shares", "/sys/fs/cgroup/cpu/cpu.shares", &first);
    kv_file("pids.max", "/sys/fs/cgroup/pids/pids.max", &first);
    kv_file("memory.max", "/sys/fs/cgroup/memory.max", &first);
    kv_file("cpu.max", "/sys/fs/cgroup/cpu.max", &first);
    /* cgroup v2 names of the v1 files above ("v2/" keys: pids.max exists in both). */
    kv_file("v2/memory.low", "/sys/fs/cgroup/memory.low", &first);
    kv_file("v2/memory.swap.max", "/sys/fs/cgroup/memory.swap.max", &first);
    kv_file("v2/cpu.weight", "/sys/fs/cgroup/cpu.weight", &first);
    kv_file("v2/pids.max", "/sys/fs/cgroup/pids.max", &first);
    printf("}");

    printf(",\"ns\":{");
    const char *nss[] = {"mnt", "pid", "net", "uts", "ipc", "cgroup", "user"};
    for (size_t i = 0; i < sizeof nss / sizeof *nss; i++) {
        char path[64], target[128] = "";
        snprintf(path, sizeof path, "/proc/self/ns/%s", nss[i]);
        ssize_t l = readlink(path, target, sizeof target - 1);
        if (l > 0) target[l] = 0;
        printf("%s\"%s\":", i ? "," : "", nss[i]);
        json_str(target);
    }
    printf("}");

    printf(",\"rlimits\":{");
    struct { const char *name; int res; } rl[] = {{"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC}, {"core", RLIMIT_CORE}};
    for (size_t i = 0; i < sizeof rl / sizeof *rl; i++) {
        struct rlimit r;
        getrlimit(rl[i].res, &r);
        printf("%s\"%s\":[%lld,%lld]", i ? "," : "", rl[i].name,
               r.rlim_cur == RLIM_INFINITY ? -1LL : (long long)r.rlim_cur,
               r.rlim_max == RLIM_INFINITY ? -1LL : (long long)r.rlim_max);
    }
    printf("}");

    /* Syscalls a default profile must refuse: errno (0 = it worked). */
    printf(",\"errno\":{");
    printf("\"unshare\":%d", errno_of(unshare(CLONE_NEWUTS)));
    /* A target that does not exist: ENOENT when mount is allowed, EPERM when filtered;
     * never mounts anything, even when run on the host. */
    printf(",\"mount\":%d", errno_of(mount("none", "/nonexistent-probe-target", "tmpfs", 0, NULL)));
    printf(",\"keyctl\":%d", errno_of(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0)));
    /* Loading a kernel module: EPERM (no CAP_SYS_MODULE, filtered); EBADF would mean the
     * kernel got as far as the (invalid) file descriptor. */
    printf(",\"finit_module\":%d", errno_of(syscall(SYS_finit_module, -1, "", 0)));
    int fd = open("/probe-write-test", O_WRONLY | O_CREAT, 0600);
    printf(",\"write_root\":%d", fd < 0 ? errno : 0);
    if (fd >= 0) { close(fd); unlink("/probe-write-test"); }
    fd = open("/tmp/probe-write-test", O_WRONLY | O_CREAT, 0600);
    printf(",\"write_tmp\":%d", fd < 0 ? errno : 0);
    if (fd >= 0) { close(fd); unlink("/tmp/probe-write-test"); }
    printf(",\"read_kcore\":%d", errno_of(open("/proc/kcore", O_RDONLY)));
    printf(",\"write_sysrq\":%d", errno_of(open("/proc/sysrq-trigger", O_WRONLY)));
    printf("}");

    /* A sample of what Docker's default seccomp profile refuses, chosen so that the
     * kernel answers differently when the filter lets the call through (harmless
     * arguments: nothing is created, loaded or changed). errno, 0 = it worked. */
    printf(",\"seccomp_sample\":{");
    long rc = syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */);
    printf("\"personality_no_randomize\":%d", errno_of(rc));
    if (rc >= 0) syscall(SYS_personality, rc);
    printf(",\"kcmp\":%d", errno_of(syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 1, 1)));
    int s = socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0);
    printf(",\"socket_alg\":%d", errno_of(s));
    if (s >= 0) close(s);
    s = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
    printf(",\"socket_vsock\":%d", errno_of(s));
    if (s >= 0) close(s);
    s = socket(AF_INET, SOCK_STREAM, 0);
    printf(",\"socket_inet\":%d", errno_of(s));
    if (s >= 0) close(s);
    /* size 0: EINVAL when it reaches the kernel; ENOSYS is the filter (libcs then use clone). */
    printf(",\"clone3\":%d", errno_of(syscall(SYS_clone3, NULL, 0)));
    printf(",\"io_uring_setup\":%d", errno_of(syscall(SYS_io_uring_setup, 0, NULL)));
    printf(",\"bpf\":%d", errno_of(syscall(SYS_bpf, -1, NULL, 0)));
    printf(",\"perf_event_open\":%d", errno_of(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0)));
    printf(",\"add_key\":%d", errno_of(syscall(SYS_add_key, NULL, NULL, NULL, 0, 0)));
    printf(",\"userfaultfd\":%d", errno_of(syscall(SYS_userfaultfd, -1)));
    printf("}");

    printf(",\"mounts\":[");
    FILE *m = fopen("/proc/self/mounts", "r");
    int mfirst = 1;
    while (m && fgets(buf, sizeof buf, m)) {
        buf[strcspn(buf, "\n")] = 0;
        printf("%s", mfirst ? "" : ",");
        mfirst = 0;
        json_str(buf);
    }
    if (m) fclose(m);
    printf("]");

    printf(",\"devices\":[");
    const char *devs[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx", "/dev/shm", "/dev/pts", "/dev/fuse", "/dev/kmsg"};
    int dfirst = 1;
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++) {
        if (access(devs[i], F_OK) == 0) { printf("%s", dfirst ? "" : ","); dfirst = 0; json_str(devs[i]); }
    }
    printf("]");
    char cg[1024] = "";
    FILE *c = fopen("/proc/self/cgroup", "r");
    if (c) { size_t n = fread(cg, 1, sizeof cg - 1, c); cg[n] = 0; fclose(c); }
    printf(",\"proc_cgroup\":");
    json_str(cg);
    /* The descriptors the container's command was started with (the directory stream's
     * own left out): its stdio and nothing of the runtime's. */
    printf(",\"fds\":[");
    DIR *d = opendir("/proc/self/fd");
    int ffirst = 1;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
        printf("%s%s", ffirst ? "" : ",", e->d_name);
        ffirst = 0;
    }
    if (d) closedir(d);
    printf("]");
    printf(",\"pid\":%d}\n", getpid());
    return 0;
}

static int hog(long mib) {
    for (long i = 0; i < mib; i++) {
        char *p = malloc(1 << 20);
        if (!p) return 2;
        memset(p, 1, 1 << 20);
    }
    printf("allocated %ld MiB\n", mib);
    return 0;
}

static double secs_of(struct timespec t) { return (double)t.tv_sec + (double)t.tv_nsec / 1e9; }

/* Busy-loops for SECONDS of wall time and reports the CPU time it got, as seen from
 * inside: {"cpu_s":…,"wall_s":…}. */
static int spin(long secs) {
    struct timespec start, now, cpu;
    clock_gettime(CLOCK_MONOTONIC, &start);
    volatile unsigned long x = 0;
    do {
        for (int i = 0; i < 1000000; i++) x++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (secs_of(now) - secs_of(start) < (double)secs);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    printf("{\"cpu_s\":%.3f,\"wall_s\":%.3f}\n", secs_of(cpu), secs_of(now) - secs_of(start));
    return 0;
}

static int tcp(int port, int server) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (server) {
        int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 1)) { perror("listen"); return 1; }
        printf("listening\n");
        fflush(stdout);
        int c = accept(s, NULL, NULL);
        if (c < 0) { perror("accept"); return 1; }
        if (write(c, "pong\n", 5) != 5) return 1;
        close(c);
        return 0;
    }
    for (int i = 0; i < 100; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
            char buf[64];
            ssize_t n = read(s, buf, sizeof buf - 1);
            if (n < 0) n = 0;
            buf[n] = 0;
            printf("got %s", buf);
            return 0;
        }
        close(s);
        usleep(50000);
    }
    perror("connect");
    return 1;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "info";
    long arg = argc > 2 ? atol(argv[2]) : 0;
    if (!strcmp(cmd, "info")) return info();
    if (!strcmp(cmd, "hog")) return hog(arg);
    if (!strcmp(cmd, "spin")) return spin(arg);
    if (!strcmp(cmd, "listen")) return tcp((int)arg, 1);
    if (!strcmp(cmd, "connect")) return tcp((int)arg, 0);
    if (!strcmp(cmd, "sleep-ignore-term")) { signal(SIGTERM, SIG_IGN); sleep((unsigned)arg); return 0; }
    fprintf(stderr, "probe: unknown command %s\n", cmd);
    return 64;
}
