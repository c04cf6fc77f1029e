// SPDX-License-Identifier: Apache-2.0
// Device probes for vhu-check --device=blk|net: after the generic protocol
// checks, drive the back-end as a virtio-blk or virtio-net driver would and
// check what the device does with real requests (virtio 1.2, 5.1 and 5.2).
//
// blk: reads the configuration space and checks it against the offered
//   features; GET_ID; writes patterns (first and last sector, multi-buffer and
//   indirect chains, one request per queue) and reads them back; FLUSH,
//   DISCARD and WRITE_ZEROES; requests past the end, of an unknown type, and
//   writes to a read-only device; malformed chains. It OVERWRITES the image
//   the back-end serves. With CheckOptions::image it also compares the bytes
//   in the file.
// net: expects a back-end that loops every frame a queue pair transmits back
//   to that pair's receive queue (vhu-net --loopback). Sends frames of 60,
//   1514 and 4000 bytes on every pair (the last spans several receive buffers
//   with MRG_RXBUF) and compares what comes back byte for byte; transmits
//   with no receive buffers posted; runs the rings through several wraps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/check_context.h"

namespace vhu::check {

// Rings smaller than this cannot hold the probes' chains.
inline constexpr uint32_t kMinDeviceQueueSize = 16;

// Whether `device` is "", "blk" or "net".
bool known_device(const std::string& device);

// The probes for `device` ("" has none), in the order they run.
const std::vector<Check>& device_checks(const std::string& device);

}  // namespace vhu::check
