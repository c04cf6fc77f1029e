// SPDX-License-Identifier: Apache-2.0
// Conformance checks for any vhost-user back-end listening on a unix socket,
// driven by the project's own front-end. Used by the vhu-check tool and by
// tests.
//
// Every check prints one line:
//   PASS name — detail
//   FAIL name — detail
//   SKIP name — detail     (not applicable, or device-specific behaviour)
// followed, after all checks, by the summary line "N passed, M failed".
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace vhu::check {

struct CheckOptions {
  std::string socket_path;
  // "" (generic checks only), "blk" or "net": the device probes to run after
  // the generic checks (device_checks.h).
  std::string device;
  // blk: the image file the back-end serves, to verify writes on the host
  // side (optional).
  std::string image;
  uint32_t queues = 1;        // queues to set up (1..256); queue pairs for net (1..128)
  uint32_t queue_size = 256;  // power of two, 1..32768
  bool verbose = false;       // print the steps of every check
  int timeout_ms = 5000;      // connect and reply timeout
  int io_timeout_ms = 2000;   // how long to wait for the device to use a buffer
  // Run only the checks with these names (all when empty).
  std::vector<std::string> only;
};

// Names of every check that runs for `device` ("", "blk" or "net"), in
// order: the generic checks, then the device probes.
std::vector<std::string> check_names(const std::string& device = "");

// Runs the checks against opts.socket_path and writes the report to
// `report`. Returns the number of failed checks (an unreachable back-end
// counts as one failure).
int run_checks(const CheckOptions& opts, std::ostream& report);

}  // namespace vhu::check
