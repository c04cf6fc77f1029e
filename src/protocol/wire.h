// SPDX-License-Identifier: Apache-2.0
// vhost-user wire format: request codes, flags, payload layouts and the
// per-request rules (payload size, fd count, reply kind) both ends rely on.
// Everything here is plain data; nothing in it trusts a received value.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vhu::wire {

inline constexpr uint32_t kVersion = 0x1;
inline constexpr uint32_t kVersionMask = 0x3;
inline constexpr uint32_t kFlagReply = 0x4;
inline constexpr uint32_t kFlagNeedReply = 0x8;
inline constexpr uint32_t kKnownFlags = kVersionMask | kFlagReply | kFlagNeedReply;

inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxPayload = 4096;  // larger than any defined payload
inline constexpr size_t kMaxFdsPerMessage = 8;
inline constexpr size_t kMaxFdsReceived = 32;  // cmsg room; more are refused
inline constexpr uint32_t kMaxTableRegions = 8;
inline constexpr uint32_t kMaxMemSlots = 509;
inline constexpr uint32_t kMaxConfigSize = 256;
inline constexpr uint32_t kMaxQueueSize = 32768;

// Front-end -> back-end requests.
enum Request : uint32_t {
  GET_FEATURES = 1,
  SET_FEATURES = 2,
  SET_OWNER = 3,
  RESET_OWNER = 4,
  SET_MEM_TABLE = 5,
  SET_LOG_BASE = 6,
  SET_LOG_FD = 7,
  SET_VRING_NUM = 8,
  SET_VRING_ADDR = 9,
  SET_VRING_BASE = 10,
  GET_VRING_BASE = 11,
  SET_VRING_KICK = 12,
  SET_VRING_CALL = 13,
  SET_VRING_ERR = 14,
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  GET_QUEUE_NUM = 17,
  SET_VRING_ENABLE = 18,
  SEND_RARP = 19,
  NET_SET_MTU = 20,
  SET_BACKEND_REQ_FD = 21,
  IOTLB_MSG = 22,
  SET_VRING_ENDIAN = 23,
  GET_CONFIG = 24,
  SET_CONFIG = 25,
  CREATE_CRYPTO_SESSION = 26,
  CLOSE_CRYPTO_SESSION = 27,
  POSTCOPY_ADVISE = 28,
  POSTCOPY_LISTEN = 29,
  POSTCOPY_END = 30,
  GET_INFLIGHT_FD = 31,
  SET_INFLIGHT_FD = 32,
  GPU_SET_SOCKET = 33,
  RESET_DEVICE = 34,
  VRING_KICK = 35,
  GET_MAX_MEM_SLOTS = 36,
  ADD_MEM_REG = 37,
  REM_MEM_REG = 38,
  SET_STATUS = 39,
  GET_STATUS = 40,
  GET_SHARED_OBJECT = 41,
  SET_DEVICE_STATE_FD = 42,
  CHECK_DEVICE_STATE = 43,
  GET_SHMEM_CONFIG = 44,
  REQUEST_MAX = 44,
};

// Back-end -> front-end requests (on the SET_BACKEND_REQ_FD channel).
enum BackendRequest : uint32_t {
  BACKEND_IOTLB_MSG = 1,
  BACKEND_CONFIG_CHANGE_MSG = 2,
  BACKEND_VRING_HOST_NOTIFIER_MSG = 3,
};

// Protocol feature bits.
enum ProtocolFeature : unsigned {
  PF_MQ = 0,
  PF_LOG_SHMFD = 1,
  PF_RARP = 2,
  PF_REPLY_ACK = 3,
  PF_NET_MTU = 4,
  PF_BACKEND_REQ = 5,
  PF_CROSS_ENDIAN = 6,
  PF_CRYPTO_SESSION = 7,
  PF_PAGEFAULT = 8,
  PF_CONFIG = 9,
  PF_BACKEND_SEND_FD = 10,
  PF_HOST_NOTIFIER = 11,
  PF_INFLIGHT_SHMFD = 12,
  PF_RESET_DEVICE = 13,
  PF_INBAND_NOTIFICATIONS = 14,
  PF_CONFIGURE_MEM_SLOTS = 15,
  PF_STATUS = 16,
  PF_XEN_MMAP = 17,
  PF_SHARED_OBJECT = 18,
  PF_DEVICE_STATE = 19,
};

// Virtio feature bits the engine itself cares about.
inline constexpr unsigned kFeatRingIndirectDesc = 28;
inline constexpr unsigned kFeatRingEventIdx = 29;
inline constexpr unsigned kFeatProtocolFeatures = 30;
inline constexpr unsigned kFeatVersion1 = 32;
inline constexpr unsigned kFeatAccessPlatform = 33;
inline constexpr unsigned kFeatRingPacked = 34;
inline constexpr unsigned kFeatLogAll = 26;

inline constexpr uint64_t bit(unsigned n) { return uint64_t{1} << n; }

inline constexpr uint64_t kVringIndexMask = 0xff;
inline constexpr uint64_t kVringNoFd = 0x100;

inline constexpr uint8_t kStatusNeedsReset = 0x40;

// Split virtqueue flags (descriptor, avail ring, used ring).
inline constexpr uint16_t kDescFNext = 1;
inline constexpr uint16_t kDescFWrite = 2;
inline constexpr uint16_t kDescFIndirect = 4;
inline constexpr uint16_t kAvailFNoInterrupt = 1;
inline constexpr uint16_t kUsedFNoNotify = 1;

#pragma pack(push, 1)
struct Header {
  uint32_t request;
  uint32_t flags;
  uint32_t size;
};

struct VringState {
  uint32_t index;
  uint32_t num;
};

struct VringAddr {
  uint32_t index;
  uint32_t flags;
  uint64_t desc_user_addr;
  uint64_t used_user_addr;
  uint64_t avail_user_addr;
  uint64_t log_guest_addr;
};

struct MemRegion {
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t user_addr;
  uint64_t mmap_offset;
};

struct MemTableHeader {
  uint32_t nregions;
  uint32_t padding;
};

struct SingleMemRegion {
  uint64_t padding;
  MemRegion region;
};

struct ConfigHeader {
  uint32_t offset;
  uint32_t size;
  uint32_t flags;
};

struct Log {
  uint64_t mmap_size;
  uint64_t mmap_offset;
};
#pragma pack(pop)

static_assert(sizeof(Header) == 12);
static_assert(sizeof(VringState) == 8);
static_assert(sizeof(VringAddr) == 40);
static_assert(sizeof(MemRegion) == 32);
static_assert(sizeof(SingleMemRegion) == 40);
static_assert(sizeof(ConfigHeader) == 12);

// How a request's payload size is checked.
enum class SizeRule : uint8_t {
  kExact,     // size == size_a
  kMemTable,  // 8 + 32 * nregions, nregions in 1..8
  kConfig,    // 12 + hdr.size, hdr.size <= 256
  kAny,       // anything up to kMaxPayload (requests we do not implement)
};

// Whether a request carries its own reply body.
enum class Reply : uint8_t {
  kNone,    // only an optional REPLY_ACK
  kU64,     // a u64 body
  kState,   // a vring state body
  kConfig,  // a config body
  kOther,   // a body we do not produce (unimplemented requests)
};

struct RequestRule {
  const char* name;
  SizeRule size_rule;
  uint32_t size;    // for kExact
  uint8_t min_fds;  // fds that must be attached
  uint8_t max_fds;  // fds that may be attached
  Reply reply;
  bool implemented;
};

// Returns nullptr for codes outside 1..REQUEST_MAX.
const RequestRule* request_rule(uint32_t code);
const char* request_name(uint32_t code);

}  // namespace vhu::wire
