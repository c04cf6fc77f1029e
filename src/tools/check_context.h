// SPDX-License-Identifier: Apache-2.0
// What the generic checks (checks.cc) and the device probes
// (device_checks.cc) share: the result tally, the report lines, connecting to
// the back-end, and a few ring helpers.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "frontend/frontend.h"
#include "tools/checks.h"

namespace vhu::check {

using Clock = std::chrono::steady_clock;
using Used = std::pair<uint32_t, uint32_t>;  // {id, len} of a used element

enum class Outcome { kPass, kFail, kSkip };
enum class Io { kUnknown, kCompletes, kDoesNotComplete };

struct Probe {
  uint64_t features = 0;
  uint64_t protocol = 0;  // 0 when PROTOCOL_FEATURES is not offered
};

std::string hex(uint64_t v);
// Names of the protocol feature bits set in `pf`, or "none".
std::string protocol_names(uint64_t pf);
// Words for a Frontend status code (0, -ETIMEDOUT, -ECONNRESET, ...).
std::string status_text(int rc);
int ms_since(Clock::time_point t0);
// Collects used elements until `n` were seen or `timeout_ms` passed.
std::vector<Used> collect_used(fe::DriverRing& r, size_t n, int timeout_ms);

class Ctx;

// One entry of a check table: the result names it reports, in order, and the
// function that runs it. An exception escaping `run` fails the first name
// not yet reported.
struct Check {
  std::vector<const char*> names;
  void (*run)(Ctx&);
};

class Ctx {
 public:
  Ctx(const CheckOptions& opts, std::ostream& out) : opts_(opts), out_(out) {}

  const CheckOptions& opts() const { return opts_; }
  int passed() const { return passed_; }
  int failed() const { return failed_; }

  // Virtqueues to set up: --queues, or two per queue pair for a net device.
  uint32_t rings() const { return opts_.device == "net" ? 2 * opts_.queues : opts_.queues; }
  // Virtqueues per unit of GET_QUEUE_NUM's answer (net counts queue pairs).
  uint32_t queue_num_unit() const { return opts_.device == "net" ? 2 : 1; }

  void result(const std::string& name, Outcome o, const std::string& detail);
  void pass(const std::string& n, const std::string& d) { result(n, Outcome::kPass, d); }
  void fail(const std::string& n, const std::string& d) { result(n, Outcome::kFail, d); }
  void skip(const std::string& n, const std::string& d) { result(n, Outcome::kSkip, d); }
  bool reported(const std::string& name) const { return reported_.count(name) != 0; }

  // A step of a check, printed with --verbose.
  void note(const std::string& text);

  fe::Frontend connect();
  // Set when a connection attempt failed: the back-end is gone (or never
  // listened), and the remaining checks are not worth a timeout each.
  const std::string& unreachable() const { return unreachable_; }

  // Two memory regions (the rings and `extra` bytes below 4 GiB, 4 MiB above)
  // and rings() queues of --queue-size.
  fe::DeviceOptions device_options(uint64_t extra = 4u << 20) const;
  fe::Device device() { return fe::Device(connect(), device_options()); }

  // Offered features, read once over a fresh connection.
  const Probe& probe();
  bool offers_protocol(unsigned pf) { return (probe().protocol & wire::bit(pf)) != 0; }

  // Whether queue 0 completed a device-writable buffer in io-round-trip.
  Io io = Io::kUnknown;

 private:
  const CheckOptions& opts_;
  std::ostream& out_;
  std::set<std::string> reported_;
  std::optional<Probe> probe_;
  std::string unreachable_;
  int passed_ = 0;
  int failed_ = 0;
};

}  // namespace vhu::check
