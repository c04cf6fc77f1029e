// SPDX-License-Identifier: Apache-2.0
// vhu-check: conformance checks for a vhost-user back-end listening on a
// unix socket.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>

#include "tools/checks.h"
#include "tools/device_checks.h"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "Usage: vhu-check --socket-path=PATH [--device=blk|net] [options]\n"
               "\n"
               "Connects to the vhost-user back-end listening at PATH as a front-end and\n"
               "checks how it follows the protocol. Prints one line per check (PASS, FAIL\n"
               "or SKIP) and a summary \"N passed, M failed\".\n"
               "\n"
               "With --device, device probes follow the generic checks:\n"
               "  blk  drives a virtio-blk back-end like a guest driver: configuration space\n"
               "       against the offered features, GET_ID, writes read back (first and last\n"
               "       sector, multi-buffer and indirect chains, every queue), FLUSH, DISCARD,\n"
               "       WRITE_ZEROES, requests past the end (IOERR), unknown types (UNSUPP),\n"
               "       writes to a read-only device (IOERR), malformed chains, ring wrap-around.\n"
               "       WARNING: the probes OVERWRITE data on the disk. Point the back-end at a\n"
               "       scratch image of at least 128 KiB that you own, never at real data.\n"
               "  net  expects a back-end that sends every frame a queue pair transmits back\n"
               "       to that pair's receive queue (vhu-net --loopback): frames of 60, 1514\n"
               "       and 4000 bytes on every pair must come back byte for byte (the last\n"
               "       spans several buffers with MRG_RXBUF), a frame sent with no receive\n"
               "       buffers must not wedge the pair, and the rings must survive wrapping.\n"
               "\n"
               "Options:\n"
               "  --socket-path=PATH   the back-end's unix socket (required)\n"
               "  --device=blk|net     also run the probes for this device type\n"
               "  --image=FILE         blk: the image the back-end serves; the probes then\n"
               "                       also compare the bytes in the file (and write to it)\n"
               "  --queues=N           queues to set up (default 1); for net, queue pairs\n"
               "  --queue-size=N       queue size, a power of two (default 256; at least 16\n"
               "                       with --device)\n"
               "  --timeout=MS         connect and reply timeout (default 5000)\n"
               "  --io-timeout=MS      wait for the device to use a buffer (default 2000)\n"
               "  --only=NAME[,NAME]   run only these checks\n"
               "  --list               list the checks (with --device: and its probes) and exit\n"
               "  --verbose, -v        print the steps of every check\n"
               "  --help, -h           show this help\n"
               "\n"
               "Examples:\n"
               "  truncate -s 8M /tmp/scratch.img\n"
               "  vhu-blk --socket-path=/tmp/blk.sock --image=/tmp/scratch.img --queues=2 &\n"
               "  vhu-check --socket-path=/tmp/blk.sock --device=blk --queues=2 \\\n"
               "            --image=/tmp/scratch.img\n"
               "  vhu-net --socket-path=/tmp/net.sock --loopback --queues=2 &\n"
               "  vhu-check --socket-path=/tmp/net.sock --device=net --queues=2\n"
               "\n"
               "Exit status: 0 when no check failed, 1 when some failed, 2 on usage errors.\n");
}

bool parse_uint(const char* s, unsigned long max, unsigned long& out) {
  if (!*s) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > max || s[0] == '-') return false;
  out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // A back-end that hangs up must not kill us with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);

  vhu::check::CheckOptions opts;
  bool list = false;
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    std::string key = arg, value;
    bool has_value = false;
    if (auto eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      key = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    auto need_value = [&]() -> bool {
      if (has_value) return true;
      if (i + 1 < argc) {
        value = argv[++i];
        return true;
      }
      std::fprintf(stderr, "vhu-check: %s needs a value\n", key.c_str());
      return false;
    };
    unsigned long n = 0;
    if (key == "--help" || key == "-h") {
      usage(stdout);
      return 0;
    } else if (key == "--verbose" || key == "-v") {
      opts.verbose = true;
    } else if (key == "--list") {
      list = true;
    } else if (key == "--socket-path") {
      if (!need_value()) return 2;
      opts.socket_path = value;
    } else if (key == "--device") {
      if (!need_value()) return 2;
      if (value.empty() || !vhu::check::known_device(value)) {
        std::fprintf(stderr, "vhu-check: unknown device '%s' (expected blk or net)\n",
                     value.c_str());
        return 2;
      }
      opts.device = value;
    } else if (key == "--image") {
      if (!need_value()) return 2;
      opts.image = value;
    } else if (key == "--queues" || key == "--queue-size" || key == "--timeout" ||
               key == "--io-timeout") {
      if (!need_value()) return 2;
      if (!parse_uint(value.c_str(), 1u << 30, n)) {
        std::fprintf(stderr, "vhu-check: bad number '%s' for %s\n", value.c_str(), key.c_str());
        return 2;
      }
      if (key == "--queues") opts.queues = static_cast<uint32_t>(n);
      if (key == "--queue-size") opts.queue_size = static_cast<uint32_t>(n);
      if (key == "--timeout") opts.timeout_ms = static_cast<int>(n);
      if (key == "--io-timeout") opts.io_timeout_ms = static_cast<int>(n);
    } else if (key == "--only") {
      if (!need_value()) return 2;
      std::stringstream ss(value);
      std::string name;
      while (std::getline(ss, name, ','))
        if (!name.empty()) opts.only.push_back(name);
    } else {
      std::fprintf(stderr, "vhu-check: unknown argument '%s'\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }

  if (list) {
    for (const auto& name : vhu::check::check_names(opts.device)) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (opts.socket_path.empty()) {
    std::fprintf(stderr, "vhu-check: --socket-path is required\n");
    usage(stderr);
    return 2;
  }
  int failed = vhu::check::run_checks(opts, std::cout);
  return failed == 0 ? 0 : 1;
}
