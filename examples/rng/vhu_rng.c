/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhu-rng: a vhost-user virtio-rng device. Every device-writable buffer the
 * driver posts on the request queue is filled with bytes from the entropy
 * source (default /dev/urandom). Serves front-ends one after another until
 * SIGINT or SIGTERM.
 *
 *   vhu-rng --socket-path=PATH [--source=FILE] [--verbose]
 *
 * A regular file as source is read in a loop (handy for tests); anything
 * else (a character device, a pipe) is read as a stream.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vhostuser/vhostuser.h>

struct rng {
  int fd;
  int is_file;
  const char* path;
};

static vhu_daemon* g_daemon;

static void on_signal(int sig) {
  (void)sig;
  vhu_daemon_stop(g_daemon); /* async-signal-safe */
}

/* Reads up to len bytes into buf; returns bytes read, or -1. */
static ssize_t source_read(struct rng* r, void* buf, size_t len) {
  for (;;) {
    ssize_t n = read(r->fd, buf, len);
    if (n > 0) return n;
    if (n == 0 && r->is_file) {
      if (lseek(r->fd, 0, SEEK_SET) < 0) return -1;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return -1;
  }
}

static void handle_queue(vhu_vring* vr, void* ud) {
  struct rng* r = ud;
  vhu_chain* chain;
  int rc;
  while ((rc = vhu_vring_pop(vr, &chain)) == 0) {
    unsigned n;
    const struct iovec* iov = vhu_chain_writable(chain, &n);
    uint32_t written = 0;
    for (unsigned i = 0; i < n; i++) {
      size_t off = 0;
      while (off < iov[i].iov_len) {
        ssize_t got = source_read(r, (char*)iov[i].iov_base + off, iov[i].iov_len - off);
        if (got <= 0) goto done;
        off += (size_t)got;
        written += (uint32_t)got;
      }
    }
  done:
    vhu_vring_push(vr, chain, written);
  }
  vhu_vring_notify(vr);
  if (rc == -EIO)
    fprintf(stderr, "vhu-rng: queue %u is broken; waiting for a reset\n", vhu_vring_index(vr));
}

static void log_cb(vhu_log_level level, const char* msg, void* ud) {
  static const char* names[] = {"error", "warning", "info", "debug"};
  (void)ud;
  fprintf(stderr, "vhu-rng: %s: %s\n", names[level], msg);
}

static void usage(FILE* f) {
  fprintf(f,
          "usage: vhu-rng --socket-path=PATH [--source=FILE] [--verbose]\n"
          "  --socket-path=PATH  unix socket to listen on for the front-end (QEMU:\n"
          "                      -chardev socket,path=PATH -device vhost-user-rng-pci)\n"
          "  --source=FILE       entropy source (default /dev/urandom); a regular\n"
          "                      file is read in a loop\n"
          "  --verbose           log protocol events to stderr (twice: debug)\n");
}

int main(int argc, char** argv) {
  const char *sock = NULL, *source = "/dev/urandom";
  int verbose = 0;
  static const struct option opts[] = {{"socket-path", required_argument, 0, 's'},
                                       {"source", required_argument, 0, 'r'},
                                       {"verbose", no_argument, 0, 'v'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "s:r:vh", opts, NULL)) != -1) {
    switch (c) {
      case 's':
        sock = optarg;
        break;
      case 'r':
        source = optarg;
        break;
      case 'v':
        verbose++;
        break;
      case 'h':
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (!sock || optind != argc) {
    usage(stderr);
    return 2;
  }

  struct rng r = {.path = source};
  r.fd = open(source, O_RDONLY | O_CLOEXEC);
  if (r.fd < 0) {
    fprintf(stderr, "vhu-rng: cannot open %s: %s\n", source, strerror(errno));
    return 1;
  }
  struct stat st;
  r.is_file = fstat(r.fd, &st) == 0 && S_ISREG(st.st_mode);
  if (r.is_file && st.st_size == 0) {
    fprintf(stderr, "vhu-rng: %s is empty\n", source);
    return 1;
  }

  vhu_backend_ops ops = {
      .struct_size = sizeof ops,
      .num_queues = 1,
      .max_queue_size = 1024,
      .handle_queue = handle_queue,
  };
  vhu_error* err = NULL;
  if (vhu_daemon_new(&ops, &r, NULL, &g_daemon, &err) != 0) {
    fprintf(stderr, "vhu-rng: %s\n", vhu_error_message(err));
    vhu_error_free(err);
    return 1;
  }
  vhu_daemon_set_log(g_daemon, log_cb,
                     verbose > 1 ? VHU_LOG_DEBUG
                     : verbose   ? VHU_LOG_INFO
                                 : VHU_LOG_WARNING,
                     NULL);
  if (vhu_daemon_listen(g_daemon, sock, &err) != 0) {
    fprintf(stderr, "vhu-rng: %s\n", vhu_error_message(err));
    vhu_error_free(err);
    vhu_daemon_free(g_daemon);
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int rc = vhu_daemon_run(g_daemon, &err);
  if (rc != 0) fprintf(stderr, "vhu-rng: %s\n", vhu_error_message(err));
  vhu_error_free(err);
  vhu_daemon_free(g_daemon);
  close(r.fd);
  return rc == 0 ? 0 : 1;
}
