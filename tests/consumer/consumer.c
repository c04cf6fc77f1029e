/* SPDX-License-Identifier: Apache-2.0 */
/* An out-of-tree C11 program that uses only the installed public header and
 * links through pkg-config: creates a daemon, listens, stops, frees. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <vhostuser/vhostuser.h>

static void handle(vhu_vring* vr, void* ud) {
  vhu_chain* c;
  (void)ud;
  while (vhu_vring_pop(vr, &c) == 0) vhu_vring_push(vr, c, 0);
  vhu_vring_notify(vr);
}

int main(void) {
  int major, minor, patch;
  vhu_version(&major, &minor, &patch);
  if (major != VHU_VERSION_MAJOR) {
    fprintf(stderr, "header %d vs library %d\n", VHU_VERSION_MAJOR, major);
    return 1;
  }
  vhu_backend_ops ops = {.struct_size = sizeof ops, .num_queues = 1, .handle_queue = handle};
  vhu_daemon* d = NULL;
  vhu_error* err = NULL;
  if (vhu_daemon_new(&ops, NULL, NULL, &d, &err) != 0) {
    fprintf(stderr, "%s\n", vhu_error_message(err));
    return 1;
  }
  char path[] = "/tmp/vhu-consumer-XXXXXX";
  if (!mkdtemp(path)) return 1;
  char sock[64];
  snprintf(sock, sizeof sock, "%s/s", path);
  if (vhu_daemon_listen(d, sock, &err) != 0 || vhu_daemon_start(d, &err) != 0) {
    fprintf(stderr, "%s\n", vhu_error_message(err));
    return 1;
  }
  vhu_daemon_stop(d);
  int rc = vhu_daemon_wait(d, NULL);
  vhu_daemon_free(d);
  rmdir(path);
  printf("consumer: libvhostuser-cxx %d.%d.%d, run returned %d (%s)\n", major, minor, patch, rc,
         vhu_strerror(rc));
  return rc == 0 ? 0 : 1;
}
