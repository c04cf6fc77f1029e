// SPDX-License-Identifier: Apache-2.0
#include "protocol/wire.h"

namespace vhu::wire {
namespace {

constexpr uint32_t kU64 = 8;
constexpr uint32_t kState = sizeof(VringState);

// Indexed by request code. Unimplemented requests accept any payload size and
// any fd count up to the per-message limit: they are answered with an error
// (when a reply is expected) and every fd they carried is closed.
constexpr RequestRule kRules[REQUEST_MAX + 1] = {
    /* 0 */ {nullptr, SizeRule::kAny, 0, 0, 0, Reply::kNone, false},
    {"GET_FEATURES", SizeRule::kExact, 0, 0, 0, Reply::kU64, true},
    {"SET_FEATURES", SizeRule::kExact, kU64, 0, 0, Reply::kNone, true},
    {"SET_OWNER", SizeRule::kExact, 0, 0, 0, Reply::kNone, true},
    {"RESET_OWNER", SizeRule::kExact, 0, 0, 0, Reply::kNone, true},
    {"SET_MEM_TABLE", SizeRule::kMemTable, 0, 1, kMaxTableRegions, Reply::kNone, true},
    {"SET_LOG_BASE", SizeRule::kExact, sizeof(Log), 0, 1, Reply::kNone, true},
    {"SET_LOG_FD", SizeRule::kExact, 0, 0, 1, Reply::kNone, true},
    {"SET_VRING_NUM", SizeRule::kExact, kState, 0, 0, Reply::kNone, true},
    {"SET_VRING_ADDR", SizeRule::kExact, sizeof(VringAddr), 0, 0, Reply::kNone, true},
    {"SET_VRING_BASE", SizeRule::kExact, kState, 0, 0, Reply::kNone, true},
    {"GET_VRING_BASE", SizeRule::kExact, kState, 0, 0, Reply::kState, true},
    {"SET_VRING_KICK", SizeRule::kExact, kU64, 0, 1, Reply::kNone, true},
    {"SET_VRING_CALL", SizeRule::kExact, kU64, 0, 1, Reply::kNone, true},
    {"SET_VRING_ERR", SizeRule::kExact, kU64, 0, 1, Reply::kNone, true},
    {"GET_PROTOCOL_FEATURES", SizeRule::kExact, 0, 0, 0, Reply::kU64, true},
    {"SET_PROTOCOL_FEATURES", SizeRule::kExact, kU64, 0, 0, Reply::kNone, true},
    {"GET_QUEUE_NUM", SizeRule::kExact, 0, 0, 0, Reply::kU64, true},
    {"SET_VRING_ENABLE", SizeRule::kExact, kState, 0, 0, Reply::kNone, true},
    {"SEND_RARP", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kNone, false},
    {"NET_SET_MTU", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kNone, false},
    {"SET_BACKEND_REQ_FD", SizeRule::kExact, 0, 1, 1, Reply::kNone, true},
    {"IOTLB_MSG", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kU64, false},
    {"SET_VRING_ENDIAN", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kNone, false},
    {"GET_CONFIG", SizeRule::kConfig, 0, 0, 0, Reply::kConfig, true},
    {"SET_CONFIG", SizeRule::kConfig, 0, 0, 0, Reply::kNone, true},
    {"CREATE_CRYPTO_SESSION", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kOther, false},
    {"CLOSE_CRYPTO_SESSION", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kNone, false},
    {"POSTCOPY_ADVISE", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kOther, false},
    {"POSTCOPY_LISTEN", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kNone, false},
    {"POSTCOPY_END", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kU64, false},
    {"GET_INFLIGHT_FD", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kOther, false},
    {"SET_INFLIGHT_FD", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kNone, false},
    {"GPU_SET_SOCKET", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kNone, false},
    {"RESET_DEVICE", SizeRule::kExact, 0, 0, 0, Reply::kNone, true},
    {"VRING_KICK", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kNone, false},
    {"GET_MAX_MEM_SLOTS", SizeRule::kExact, 0, 0, 0, Reply::kU64, true},
    {"ADD_MEM_REG", SizeRule::kExact, sizeof(SingleMemRegion), 1, 1, Reply::kNone, true},
    {"REM_MEM_REG", SizeRule::kExact, sizeof(SingleMemRegion), 0, 1, Reply::kNone, true},
    {"SET_STATUS", SizeRule::kExact, kU64, 0, 0, Reply::kNone, true},
    {"GET_STATUS", SizeRule::kExact, 0, 0, 0, Reply::kU64, true},
    {"GET_SHARED_OBJECT", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kOther, false},
    {"SET_DEVICE_STATE_FD", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kU64, false},
    {"CHECK_DEVICE_STATE", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kU64, false},
    {"GET_SHMEM_CONFIG", SizeRule::kAny, 0, 0, kMaxFdsPerMessage, Reply::kOther, false},
};

}  // namespace

const RequestRule* request_rule(uint32_t code) {
  if (code == 0 || code > REQUEST_MAX) return nullptr;
  return &kRules[code];
}

const char* request_name(uint32_t code) {
  const RequestRule* r = request_rule(code);
  return r ? r->name : "UNKNOWN";
}

}  // namespace vhu::wire
