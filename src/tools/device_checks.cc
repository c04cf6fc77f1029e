// SPDX-License-Identifier: Apache-2.0
#include "tools/device_checks.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>
#include <set>

#include "common/fd.h"

namespace vhu::check {
namespace {

using fe::Device;
using fe::DeviceOptions;
using fe::DriverRing;
using wire::bit;

// ---- Chains built from byte images ----

// A chain described by its contents: the device-readable bytes cut into
// pieces (one descriptor each), then `wlen` device-writable bytes cut into
// pieces. Writable bytes start out as kUnwritten.
struct ChainSpec {
  std::vector<uint8_t> readable;
  std::vector<uint32_t> rcuts;  // sizes, summing to readable.size()
  std::vector<uint32_t> wcuts;  // sizes, summing to the writable length
  bool indirect = false;
};

constexpr uint8_t kUnwritten = 0xee;

struct Piece {
  uint64_t gpa;
  uint32_t len;
};

struct Posted {
  int head = -1;
  std::vector<Piece> writable;
};

uint32_t total(const std::vector<uint32_t>& v) {
  uint32_t t = 0;
  for (uint32_t x : v) t += x;
  return t;
}

// Cuts `len` bytes into `n` pieces of unequal sizes, none larger than
// `max_piece` (more pieces when needed). No piece is empty.
std::vector<uint32_t> split(uint32_t len, uint32_t n, uint32_t max_piece) {
  if (len == 0) return {};
  n = std::max<uint32_t>(1, std::min(n, len));
  n = std::max(n, static_cast<uint32_t>((uint64_t{len} + max_piece - 1) / max_piece));
  std::vector<uint32_t> out;
  uint32_t weights = 0;
  for (uint32_t i = 0; i < n; i++) weights += i % 4 + 1;
  uint32_t left = len;
  for (uint32_t i = 0; i + 1 < n; i++) {
    uint32_t s = static_cast<uint32_t>(uint64_t{len} * (i % 4 + 1) / weights);
    s = std::clamp<uint32_t>(s, 1, left - (n - 1 - i));
    out.push_back(s);
    left -= s;
  }
  out.push_back(left);
  // Even out when a weighted piece came out too large.
  if (*std::max_element(out.begin(), out.end()) > max_piece) {
    out.assign(n, len / n);
    for (uint32_t i = 0; i < len % n; i++) out[i]++;
  }
  return out;
}

Posted post_chain(Device& d, DriverRing& r, const ChainSpec& s) {
  std::vector<DriverRing::Buf> bufs;
  Posted p;
  size_t off = 0;
  for (uint32_t len : s.rcuts) {
    uint64_t gpa = d.mem().alloc(len, 8);
    d.mem().write(gpa, s.readable.data() + off, len);
    off += len;
    bufs.push_back({gpa, len, false});
  }
  for (uint32_t len : s.wcuts) {
    uint64_t gpa = d.mem().alloc(len, 8);
    d.mem().fill(gpa, kUnwritten, len);
    bufs.push_back({gpa, len, true});
    p.writable.push_back({gpa, len});
  }
  p.head = r.add_chain(bufs, s.indirect);
  return p;
}

std::vector<uint8_t> read_writable(Device& d, const Posted& p) {
  std::vector<uint8_t> out;
  for (const Piece& w : p.writable) {
    size_t at = out.size();
    out.resize(at + w.len);
    d.mem().read(w.gpa, out.data() + at, w.len);
  }
  return out;
}

// Waits until every head in `heads` was used (or the timeout passed).
// Returns head -> used length; used elements for other ids are dropped.
std::map<int, uint32_t> collect_heads(DriverRing& r, const std::set<int>& heads, int timeout_ms) {
  std::map<int, uint32_t> out;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    while (auto u = r.get_used()) {
      int id = static_cast<int>(u->first);
      if (heads.count(id)) out[id] = u->second;
    }
    if (out.size() >= heads.size()) break;
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    r.wait_used(static_cast<int>(left));
  }
  return out;
}

// Deterministic test bytes: byte `i` of the run identified by `seed` and
// `where` (a sector number, a frame number, ...).
std::vector<uint8_t> pattern(uint64_t seed, uint64_t where, size_t len) {
  std::vector<uint8_t> out(len);
  uint64_t x = seed ^ (where * 0x9e3779b97f4a7c15ull);
  for (size_t i = 0; i < len; i++) {
    if (i % 8 == 0) {
      x += 0x9e3779b97f4a7c15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      x ^= z >> 31;
    }
    out[i] = static_cast<uint8_t>(x >> (8 * (i % 8)));
  }
  return out;
}

// A seed per run, so that data left behind by an earlier run never matches.
uint64_t run_seed() {
  static const uint64_t seed = static_cast<uint64_t>(Clock::now().time_since_epoch().count()) ^
                               (static_cast<uint64_t>(::getpid()) << 32);
  return seed;
}

// "" when equal, else where the first difference is.
std::string compare(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
  if (got.size() != want.size()) return strfmt("%zu bytes, expected %zu", got.size(), want.size());
  for (size_t i = 0; i < got.size(); i++)
    if (got[i] != want[i]) return strfmt("byte %zu is 0x%02x, expected 0x%02x", i, got[i], want[i]);
  return {};
}

bool all_zero(const std::vector<uint8_t>& v) {
  return std::all_of(v.begin(), v.end(), [](uint8_t b) { return b == 0; });
}

std::string join(const std::vector<std::string>& v, const char* sep = "; ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

template <typename T>
T get_le(const std::vector<uint8_t>& b, size_t off) {
  T v{};
  if (off + sizeof v <= b.size()) std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

template <typename T>
void put_le(std::vector<uint8_t>& b, size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof v);
}

// ---- Host side of the image file ----

// The size of a regular file, or of a block device (whose st_size is 0).
int64_t file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw_errno("stat " + path);
  if (!S_ISBLK(st.st_mode)) return st.st_size;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open " + path);
  uint64_t bytes = 0;
  if (::ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) throw_errno("BLKGETSIZE64 " + path);
  return static_cast<int64_t>(bytes);
}

std::vector<uint8_t> read_file(const std::string& path, uint64_t off, size_t len) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open " + path);
  std::vector<uint8_t> out(len);
  size_t got = 0;
  while (got < len) {
    ssize_t n = ::pread(fd.get(), out.data() + got, len - got, static_cast<off_t>(off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("read " + path);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

void write_file(const std::string& path, uint64_t off, const std::vector<uint8_t>& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) throw_errno("open " + path);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        ::pwrite(fd.get(), data.data() + done, data.size() - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("write " + path);
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) throw_errno("fsync " + path);
}

// ==== virtio-blk ====

// Feature bits (virtio 1.2, 5.2.3).
constexpr unsigned kBlkSizeMax = 1;
constexpr unsigned kBlkSegMax = 2;
constexpr unsigned kBlkGeometry = 4;
constexpr unsigned kBlkRo = 5;
constexpr unsigned kBlkBlkSize = 6;
constexpr unsigned kBlkFlush = 9;
constexpr unsigned kBlkTopology = 10;
constexpr unsigned kBlkMq = 12;
constexpr unsigned kBlkDiscard = 13;
constexpr unsigned kBlkWriteZeroes = 14;

// Request types and status values (5.2.6).
constexpr uint32_t kBlkIn = 0;
constexpr uint32_t kBlkOut = 1;
constexpr uint32_t kBlkFlushReq = 4;
constexpr uint32_t kBlkGetId = 8;
constexpr uint32_t kBlkDiscardReq = 11;
constexpr uint32_t kBlkWriteZeroesReq = 13;
constexpr uint8_t kStatusOk = 0;
constexpr uint8_t kStatusIoErr = 1;
constexpr uint8_t kStatusUnsupp = 2;
constexpr uint32_t kUnmapFlag = 1;

constexpr uint32_t kSector = 512;
constexpr uint32_t kHeaderLen = 16;  // type, reserved, sector
constexpr uint32_t kIdLen = 20;
constexpr uint32_t kSegmentLen = 16;  // discard / write-zeroes segment
// Configuration space up to write_zeroes_may_unmap (5.2.4), padded.
constexpr uint32_t kBlkConfigLen = 60;
constexpr uint32_t kBlkConfigShortLen = 36;  // up to num_queues
// The probes' sectors must fit: a few regions of up to 64 sectors.
constexpr uint64_t kMinCapacity = 256;
constexpr uint32_t kMaxPieces = 4;

std::string status_name(uint8_t s) {
  switch (s) {
    case kStatusOk:
      return "OK";
    case kStatusIoErr:
      return "IOERR";
    case kStatusUnsupp:
      return "UNSUPP";
    case kUnwritten:
      return "not written";
    default:
      return strfmt("0x%02x", s);
  }
}

struct BlkConfig {
  uint32_t bytes = 0;  // how much of the configuration space was read
  std::vector<uint8_t> raw;
  uint64_t capacity = 0;
  uint32_t size_max = 0;
  uint32_t seg_max = 0;
  uint32_t blk_size = 0;
  uint16_t num_queues = 0;
  uint32_t max_discard_sectors = 0;
  uint32_t max_discard_seg = 0;
  uint32_t discard_sector_alignment = 0;
  uint32_t max_write_zeroes_sectors = 0;
  uint32_t max_write_zeroes_seg = 0;
  uint8_t write_zeroes_may_unmap = 0;
};

BlkConfig parse_blk_config(std::vector<uint8_t> raw) {
  BlkConfig c;
  c.bytes = static_cast<uint32_t>(raw.size());
  c.capacity = get_le<uint64_t>(raw, 0);
  c.size_max = get_le<uint32_t>(raw, 8);
  c.seg_max = get_le<uint32_t>(raw, 12);
  c.blk_size = get_le<uint32_t>(raw, 20);
  c.num_queues = get_le<uint16_t>(raw, 34);
  c.max_discard_sectors = get_le<uint32_t>(raw, 36);
  c.max_discard_seg = get_le<uint32_t>(raw, 40);
  c.discard_sector_alignment = get_le<uint32_t>(raw, 44);
  c.max_write_zeroes_sectors = get_le<uint32_t>(raw, 48);
  c.max_write_zeroes_seg = get_le<uint32_t>(raw, 52);
  c.write_zeroes_may_unmap = get_le<uint8_t>(raw, 56);
  c.raw = std::move(raw);
  return c;
}

// One request: its chain, the queue it goes to, and how many data bytes the
// device writes before the status byte.
struct BlkReq {
  ChainSpec chain;
  uint32_t queue = 0;
  uint32_t in_len = 0;
  std::string what;  // for reports
};

struct BlkDone {
  bool used = false;
  uint32_t len = 0;
  uint8_t status = kUnwritten;  // the last writable byte
  std::vector<uint8_t> data;    // the writable bytes before it
};

std::vector<uint8_t> blk_header(uint32_t type, uint64_t sector) {
  std::vector<uint8_t> h(kHeaderLen, 0);
  put_le<uint32_t>(h, 0, type);
  put_le<uint64_t>(h, 8, sector);
  return h;
}

std::vector<uint8_t> blk_segment(uint64_t sector, uint32_t num, uint32_t flags) {
  std::vector<uint8_t> s(kSegmentLen, 0);
  put_le<uint64_t>(s, 0, sector);
  put_le<uint32_t>(s, 8, num);
  put_le<uint32_t>(s, 12, flags);
  return s;
}

// A virtio-blk device as a driver sees it: negotiated, its queues started,
// its configuration read.
class Blk {
 public:
  explicit Blk(Ctx& c) : c_(c), d_(c.connect(), options(c)) {
    d_.bring_up();
    if (!(d_.protocol_features() & bit(wire::PF_CONFIG)))
      throw Error(-ENOTSUP,
                  "the CONFIG protocol feature is not offered, so the capacity is unknown");
    std::vector<uint8_t> raw;
    try {
      raw = d_.fe().get_config(0, kBlkConfigLen);
    } catch (const Error& e) {
      if (e.code() != -EIO) throw;
      c.note(
          strfmt("GET_CONFIG of %u bytes refused; reading %u", kBlkConfigLen, kBlkConfigShortLen));
      raw = d_.fe().get_config(0, kBlkConfigShortLen);
    }
    cfg_ = parse_blk_config(std::move(raw));
  }

  Device& dev() { return d_; }
  const BlkConfig& cfg() const { return cfg_; }
  uint64_t capacity() const { return cfg_.capacity; }
  bool has(unsigned f) const { return (d_.features() & bit(f)) != 0; }
  bool read_only() const { return has(kBlkRo); }
  bool indirect() const { return has(wire::kFeatRingIndirectDesc); }
  uint32_t queues() const { return static_cast<uint32_t>(d_.num_rings()); }

  // Most data buffers one request may have (seg_max), and the largest
  // (size_max).
  uint32_t max_pieces() const {
    return has(kBlkSegMax) && cfg_.seg_max > 0 ? std::min(kMaxPieces, cfg_.seg_max) : kMaxPieces;
  }
  uint32_t max_piece() const {
    return has(kBlkSizeMax) && cfg_.size_max >= kSector ? cfg_.size_max : UINT32_MAX;
  }

  // A request of `type` at `sector` carrying `out` to the device and asking
  // for `in_len` bytes back, the data cut into `pieces` buffers.
  BlkReq req(uint32_t type, uint64_t sector, const std::vector<uint8_t>& out, uint32_t in_len,
             uint32_t pieces = 1, bool indirect = false, uint32_t queue = 0) const {
    BlkReq r;
    r.queue = queue;
    r.in_len = in_len;
    r.chain.readable = blk_header(type, sector);
    r.chain.readable.insert(r.chain.readable.end(), out.begin(), out.end());
    r.chain.rcuts = {kHeaderLen};
    pieces = std::min(pieces, max_pieces());
    for (uint32_t s : split(static_cast<uint32_t>(out.size()), pieces, max_piece()))
      r.chain.rcuts.push_back(s);
    r.chain.wcuts = split(in_len, pieces, max_piece());
    r.chain.wcuts.push_back(1);
    r.chain.indirect = indirect && this->indirect();
    return r;
  }
  BlkReq write(uint64_t sector, const std::vector<uint8_t>& data, uint32_t pieces = 1,
               bool indirect = false, uint32_t queue = 0) const {
    BlkReq r = req(kBlkOut, sector, data, 0, pieces, indirect, queue);
    r.what = strfmt("write of %zu sector(s) at %llu", data.size() / kSector,
                    static_cast<unsigned long long>(sector));
    return r;
  }
  BlkReq read(uint64_t sector, uint32_t sectors, uint32_t pieces = 1, bool indirect = false,
              uint32_t queue = 0) const {
    BlkReq r = req(kBlkIn, sector, {}, sectors * kSector, pieces, indirect, queue);
    r.what =
        strfmt("read of %u sector(s) at %llu", sectors, static_cast<unsigned long long>(sector));
    return r;
  }

  // Makes every request available (per queue, in order), kicks, and waits
  // for all of them.
  std::vector<BlkDone> run(const std::vector<BlkReq>& reqs) {
    std::vector<Posted> posted;
    std::map<uint32_t, std::set<int>> heads;
    for (const BlkReq& r : reqs) {
      posted.push_back(post_chain(d_, d_.ring(r.queue), r.chain));
      heads[r.queue].insert(posted.back().head);
    }
    for (auto& [q, h] : heads) d_.ring(q).kick();
    std::map<uint32_t, std::map<int, uint32_t>> used;
    for (auto& [q, h] : heads) used[q] = collect_heads(d_.ring(q), h, c_.opts().io_timeout_ms);
    std::vector<BlkDone> out;
    for (size_t i = 0; i < reqs.size(); i++) {
      BlkDone done;
      auto& u = used[reqs[i].queue];
      auto it = u.find(posted[i].head);
      std::vector<uint8_t> w = read_writable(d_, posted[i]);
      if (!w.empty()) {
        done.status = w.back();
        w.pop_back();
        done.data = std::move(w);
      }
      if (it != u.end()) {
        done.used = true;
        done.len = it->second;
      }
      out.push_back(std::move(done));
    }
    return out;
  }
  BlkDone run1(const BlkReq& r) { return run({r})[0]; }

  // Why a completed request is wrong ("" when it is right): used, with
  // `want` status and, for a successful request, the used length covering
  // the data and the status byte.
  std::string problem(const BlkReq& r, const BlkDone& d, uint8_t want = kStatusOk) const {
    std::string what = r.what.empty() ? "request" : r.what;
    if (!d.used)
      return strfmt("%s not completed within %d ms", what.c_str(), c_.opts().io_timeout_ms);
    if (d.status != want)
      return strfmt("%s: status %s, expected %s", what.c_str(), status_name(d.status).c_str(),
                    status_name(want).c_str());
    uint32_t wlen = total(r.chain.wcuts);
    if (want == kStatusOk && r.in_len > 0 && d.len != wlen)
      return strfmt("%s: used length %u, expected %u (data and status)", what.c_str(), d.len, wlen);
    if (d.len < 1 || d.len > wlen)
      return strfmt("%s: used length %u, expected 1..%u", what.c_str(), d.len, wlen);
    return {};
  }

  // The first problem among requests run together ("" when all are right).
  std::string first_problem(const std::vector<BlkReq>& reqs, const std::vector<BlkDone>& done,
                            uint8_t want = kStatusOk) const {
    for (size_t i = 0; i < reqs.size(); i++)
      if (std::string p = problem(reqs[i], done[i], want); !p.empty()) return p;
    return {};
  }

 private:
  static DeviceOptions options(Ctx& c) {
    DeviceOptions o = c.device_options(32u << 20);
    o.features |= bit(kBlkSizeMax) | bit(kBlkSegMax) | bit(kBlkGeometry) | bit(kBlkRo) |
                  bit(kBlkBlkSize) | bit(kBlkFlush) | bit(kBlkTopology) | bit(kBlkMq) |
                  bit(kBlkDiscard) | bit(kBlkWriteZeroes);
    return o;
  }

  Ctx& c_;
  Device d_;
  BlkConfig cfg_;
};

// Sectors the probes use, away from each other: [0], [capacity - 1] and four
// 64-sector areas spread over the disk.
uint64_t area(const Blk& b, unsigned i) {
  uint64_t step = b.capacity() / 5;
  return std::max<uint64_t>(1, step * (i + 1) - 32);
}

// Skips (returns false) when the disk is too small for the probes.
bool big_enough(Ctx& c, const Blk& b, const char* name) {
  if (b.capacity() >= kMinCapacity) return true;
  c.skip(name, strfmt("capacity %llu sectors; the probes need at least %llu (128 KiB)",
                      static_cast<unsigned long long>(b.capacity()),
                      static_cast<unsigned long long>(kMinCapacity)));
  return false;
}

std::vector<uint8_t> sectors_of(uint64_t seed, uint64_t sector, uint32_t n) {
  std::vector<uint8_t> out;
  for (uint32_t i = 0; i < n; i++) {
    auto p = pattern(seed, sector + i, kSector);
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

void check_blk_config(Ctx& c) {
  const char* name = "blk-config";
  Blk b(c);
  const BlkConfig& k = b.cfg();
  std::vector<std::string> bad, facts;
  facts.push_back(strfmt("capacity %llu sectors", static_cast<unsigned long long>(k.capacity)));
  if (k.capacity == 0) bad.push_back("capacity is 0");
  auto partial = b.dev().fe().get_config(0, 8);
  if (get_le<uint64_t>(partial, 0) != k.capacity)
    bad.push_back(strfmt("GET_CONFIG of bytes 0..7 says capacity %llu, the full read %llu",
                         static_cast<unsigned long long>(get_le<uint64_t>(partial, 0)),
                         static_cast<unsigned long long>(k.capacity)));
  if (b.has(kBlkBlkSize)) {
    facts.push_back(strfmt("blk_size %u", k.blk_size));
    if (k.blk_size < kSector || (k.blk_size & (k.blk_size - 1)) != 0)
      bad.push_back(strfmt("blk_size %u is not a power of two of at least 512", k.blk_size));
  }
  if (b.has(kBlkSegMax)) {
    facts.push_back(strfmt("seg_max %u", k.seg_max));
    if (k.seg_max == 0) bad.push_back("SEG_MAX offered with seg_max 0");
  }
  if (b.has(kBlkSizeMax)) {
    facts.push_back(strfmt("size_max %u", k.size_max));
    if (k.size_max < kSector) bad.push_back(strfmt("size_max %u is below 512", k.size_max));
  }
  if (b.has(kBlkMq)) {
    facts.push_back(strfmt("num_queues %u", k.num_queues));
    if (k.num_queues == 0) bad.push_back("MQ offered with num_queues 0");
    if (k.num_queues < c.opts().queues)
      bad.push_back(strfmt("num_queues %u, fewer than --queues=%u", k.num_queues, c.opts().queues));
    if (b.dev().queue_num() && k.num_queues > b.dev().queue_num())
      bad.push_back(strfmt("num_queues %u, but GET_QUEUE_NUM says %llu", k.num_queues,
                           static_cast<unsigned long long>(b.dev().queue_num())));
  } else if (c.opts().queues > 1) {
    bad.push_back(strfmt("--queues=%u but VIRTIO_BLK_F_MQ is not offered", c.opts().queues));
  }
  bool need_long = b.has(kBlkDiscard) || b.has(kBlkWriteZeroes);
  if (need_long && k.bytes < kBlkConfigLen)
    bad.push_back(
        strfmt("DISCARD or WRITE_ZEROES offered but a %u-byte GET_CONFIG (up to "
               "write_zeroes_may_unmap) was refused",
               kBlkConfigLen));
  if (b.has(kBlkDiscard) && k.bytes >= kBlkConfigLen) {
    facts.push_back(strfmt("discard max %u sectors x %u segments, alignment %u",
                           k.max_discard_sectors, k.max_discard_seg, k.discard_sector_alignment));
    if (k.max_discard_sectors == 0) bad.push_back("DISCARD offered with max_discard_sectors 0");
    if (k.max_discard_seg == 0) bad.push_back("DISCARD offered with max_discard_seg 0");
  }
  if (b.has(kBlkWriteZeroes) && k.bytes >= kBlkConfigLen) {
    facts.push_back(strfmt("write-zeroes max %u sectors x %u segments, may_unmap %u",
                           k.max_write_zeroes_sectors, k.max_write_zeroes_seg,
                           k.write_zeroes_may_unmap));
    if (k.max_write_zeroes_sectors == 0)
      bad.push_back("WRITE_ZEROES offered with max_write_zeroes_sectors 0");
    if (k.max_write_zeroes_seg == 0)
      bad.push_back("WRITE_ZEROES offered with max_write_zeroes_seg 0");
    if (k.write_zeroes_may_unmap > 1)
      bad.push_back(strfmt("write_zeroes_may_unmap is %u (0 or 1)", k.write_zeroes_may_unmap));
  }
  if (b.read_only()) facts.push_back("read-only");
  if (!c.opts().image.empty()) {
    int64_t size = file_size(c.opts().image);
    if (static_cast<uint64_t>(size) / kSector != k.capacity)
      bad.push_back(strfmt("the image is %lld bytes (%lld sectors) but capacity is %llu",
                           static_cast<long long>(size), static_cast<long long>(size / kSector),
                           static_cast<unsigned long long>(k.capacity)));
    else
      facts.push_back("matches the image size");
  }
  if (!bad.empty()) return c.fail(name, join(bad));
  c.pass(name, join(facts, ", "));
}

void check_blk_get_id(Ctx& c) {
  const char* name = "blk-get-id";
  Blk b(c);
  BlkReq r = b.req(kBlkGetId, 0, {}, kIdLen);
  r.what = "GET_ID";
  BlkDone d = b.run1(r);
  if (d.used && d.status == kStatusUnsupp)
    return c.pass(name, "GET_ID answered UNSUPP (the device has no serial)");
  std::string p = b.problem(r, d);
  // The device may report only the bytes of the serial it wrote.
  if (!p.empty() && !(d.used && d.status == kStatusOk && d.len >= 1 && d.len <= kIdLen + 1))
    return c.fail(name, p);
  std::string id;
  size_t i = 0;
  for (; i < d.data.size() && d.data[i] != 0; i++) {
    if (d.data[i] < 0x20 || d.data[i] > 0x7e)
      return c.fail(name, strfmt("serial byte %zu is 0x%02x (not printable ASCII)", i, d.data[i]));
    id += static_cast<char>(d.data[i]);
  }
  c.pass(name, "serial \"" + id + "\"" + strfmt(", used length %u", d.len));
}

void check_blk_read_write(Ctx& c) {
  const char* name = "blk-read-write";
  Blk b(c);
  if (!big_enough(c, b, name)) return;
  const uint64_t seed = run_seed() ^ 1;
  const uint64_t last = b.capacity() - 1, mid = area(b, 0);
  struct Span {
    uint64_t sector;
    uint32_t sectors;
    uint32_t pieces;
    bool indirect;
  };
  // Writes go out in one shape and are read back in another.
  const std::vector<Span> spans = {
      {0, 1, 1, false}, {last, 1, 1, true}, {mid, 8, 4, false}, {mid + 16, 16, 3, true}};
  std::vector<std::string> shapes = {"first sector", "last sector", "8 sectors in 4 buffers",
                                     b.indirect() ? "16 sectors in an indirect table"
                                                  : "16 sectors in 3 buffers (no INDIRECT_DESC)"};
  if (b.read_only()) {
    std::vector<BlkReq> reads;
    for (const Span& s : spans) reads.push_back(b.read(s.sector, s.sectors, s.pieces, s.indirect));
    auto done = b.run(reads);
    for (size_t i = 0; i < reads.size(); i++) {
      std::string p = b.problem(reads[i], done[i]);
      if (!p.empty()) return c.fail(name, p);
      if (!c.opts().image.empty()) {
        auto want = read_file(c.opts().image, spans[i].sector * kSector, done[i].data.size());
        std::string diff = compare(done[i].data, want);
        if (!diff.empty())
          return c.fail(name, reads[i].what + " differs from the image file: " + diff);
      }
    }
    return c.pass(name, "read-only device: " + join(shapes, ", ") + " read" +
                            (c.opts().image.empty() ? "" : ", equal to the image file"));
  }
  std::vector<BlkReq> writes, reads;
  std::vector<std::vector<uint8_t>> want;
  for (const Span& s : spans) {
    want.push_back(sectors_of(seed, s.sector, s.sectors));
    writes.push_back(b.write(s.sector, want.back(), s.pieces, s.indirect));
    reads.push_back(b.read(s.sector, s.sectors, s.pieces == 1 ? 3 : 1, !s.indirect));
  }
  auto wd = b.run(writes);
  if (std::string p = b.first_problem(writes, wd); !p.empty()) return c.fail(name, p);
  auto rd = b.run(reads);
  for (size_t i = 0; i < reads.size(); i++) {
    std::string p = b.problem(reads[i], rd[i]);
    if (!p.empty()) return c.fail(name, p);
    std::string diff = compare(rd[i].data, want[i]);
    if (!diff.empty()) return c.fail(name, reads[i].what + " after the write: " + diff);
  }
  c.pass(name, join(shapes, ", ") + ": written and read back equal");
}

void check_blk_queues(Ctx& c) {
  const char* name = "blk-queues";
  Blk b(c);
  uint32_t n = b.queues();
  if (n < 2) return c.skip(name, "one queue (run with --queues=N to test several)");
  if (!big_enough(c, b, name)) return;
  const uint64_t seed = run_seed() ^ 2;
  const uint64_t base = area(b, 1);
  std::vector<BlkReq> writes, reads;
  std::vector<std::vector<uint8_t>> want;
  for (uint32_t q = 0; q < n; q++) {
    uint64_t s = base + (2 * q) % 60;
    want.push_back(sectors_of(seed, s, 2));
    writes.push_back(b.write(s, want.back(), 2, false, q));
    writes.back().what += strfmt(" on queue %u", q);
    // Read back on the next queue.
    reads.push_back(b.read(s, 2, 1, false, (q + 1) % n));
    reads.back().what += strfmt(" on queue %u", (q + 1) % n);
  }
  if (b.read_only()) {
    auto rd = b.run(reads);
    if (std::string p = b.first_problem(reads, rd); !p.empty()) return c.fail(name, p);
    return c.pass(name, strfmt("read-only device: one read on each of %u queues", n));
  }
  auto wd = b.run(writes);
  if (std::string p = b.first_problem(writes, wd); !p.empty()) return c.fail(name, p);
  auto rd = b.run(reads);
  for (size_t i = 0; i < reads.size(); i++) {
    std::string p = b.problem(reads[i], rd[i]);
    if (!p.empty()) return c.fail(name, p);
    std::string diff = compare(rd[i].data, want[i]);
    if (!diff.empty()) return c.fail(name, reads[i].what + ": " + diff);
  }
  c.pass(name, strfmt("one write on each of %u queues, read back on the next queue", n));
}

BlkDone flush(Blk& b, std::string* problem) {
  BlkReq r = b.req(kBlkFlushReq, 0, {}, 0);
  r.what = "FLUSH";
  BlkDone d = b.run1(r);
  *problem = b.problem(r, d);
  return d;
}

void check_blk_flush(Ctx& c) {
  const char* name = "blk-flush";
  Blk b(c);
  if (!b.has(kBlkFlush)) return c.skip(name, "VIRTIO_BLK_F_FLUSH not offered");
  std::string p;
  BlkDone d = flush(b, &p);
  if (!p.empty()) return c.fail(name, p);
  c.pass(name, strfmt("FLUSH returned OK, used length %u", d.len));
}

void check_blk_image(Ctx& c) {
  const char* name = "blk-image";
  const std::string& image = c.opts().image;
  if (image.empty()) return c.skip(name, "no --image given");
  Blk b(c);
  if (!big_enough(c, b, name)) return;
  const uint64_t seed = run_seed() ^ 3;
  const uint64_t last = b.capacity() - 1, mid = area(b, 2);
  if (b.read_only()) {
    // Only reads; the file was compared in blk-read-write. Here: a range
    // spanning two buffers and the last sector.
    std::vector<BlkReq> reads = {b.read(mid, 8, 2), b.read(last, 1)};
    auto rd = b.run(reads);
    for (size_t i = 0; i < reads.size(); i++) {
      std::string p = b.problem(reads[i], rd[i]);
      if (!p.empty()) return c.fail(name, p);
      uint64_t s = i == 0 ? mid : last;
      std::string diff = compare(rd[i].data, read_file(image, s * kSector, rd[i].data.size()));
      if (!diff.empty()) return c.fail(name, reads[i].what + " differs from the file: " + diff);
    }
    return c.pass(name, "read-only device: reads equal the image file");
  }
  // Device writes land in the file.
  int64_t size0 = file_size(image);
  auto a = sectors_of(seed, mid, 8), z = sectors_of(seed, last, 1);
  std::vector<BlkReq> writes = {b.write(mid, a, 3), b.write(last, z)};
  auto wd = b.run(writes);
  if (std::string p = b.first_problem(writes, wd); !p.empty()) return c.fail(name, p);
  std::string how = "without FLUSH (not offered)";
  if (b.has(kBlkFlush)) {
    std::string p;
    flush(b, &p);
    if (!p.empty()) return c.fail(name, p);
    how = "after FLUSH";
  }
  std::string diff = compare(read_file(image, mid * kSector, a.size()), a);
  if (!diff.empty())
    return c.fail(name, strfmt("8 sectors written at %llu, in the file %s: ",
                               static_cast<unsigned long long>(mid), how.c_str()) +
                            diff);
  diff = compare(read_file(image, last * kSector, z.size()), z);
  if (!diff.empty()) return c.fail(name, "the last sector, in the file " + how + ": " + diff);
  if (file_size(image) != size0)
    return c.fail(name,
                  strfmt("the image grew from %lld to %lld bytes", static_cast<long long>(size0),
                         static_cast<long long>(file_size(image))));
  // Bytes written to the file are what the device reads.
  auto h = sectors_of(seed ^ 0x55, mid + 8, 4);
  write_file(image, (mid + 8) * kSector, h);
  BlkReq r = b.read(mid + 8, 4, 2, true);
  BlkDone d = b.run1(r);
  std::string p = b.problem(r, d);
  if (!p.empty()) return c.fail(name, p);
  diff = compare(d.data, h);
  if (!diff.empty())
    return c.fail(name, "4 sectors written into the file, read by the device: " + diff);
  c.pass(name, "device writes are in the file " + how + ", and file writes are what it reads");
}

void check_blk_discard(Ctx& c) {
  const char* name = "blk-discard";
  Blk b(c);
  if (!b.has(kBlkDiscard)) return c.skip(name, "VIRTIO_BLK_F_DISCARD not offered");
  if (b.read_only()) return c.skip(name, "read-only device (see blk-read-only)");
  if (!big_enough(c, b, name)) return;
  const BlkConfig& k = b.cfg();
  uint64_t align = std::max<uint32_t>(1, k.discard_sector_alignment);
  uint32_t n = static_cast<uint32_t>(
      std::min<uint64_t>({16, k.max_discard_sectors, std::max<uint64_t>(align, 8)}));
  uint64_t s0 = area(b, 3) / align * align;
  if (s0 == 0) s0 = align;
  if (s0 + 2 * align + 2 * n > b.capacity())
    return c.skip(name, strfmt("discard_sector_alignment %llu leaves no room on the disk",
                               static_cast<unsigned long long>(align)));
  const uint64_t seed = run_seed() ^ 4;
  auto data = sectors_of(seed, s0, n);
  BlkReq w = b.write(s0, data, 2);
  std::string p = b.problem(w, b.run1(w));
  if (!p.empty()) return c.fail(name, p);
  std::vector<uint8_t> segs = blk_segment(s0, n, 0);
  std::string detail = strfmt("%u sectors at %llu", n, static_cast<unsigned long long>(s0));
  if (k.max_discard_seg >= 2) {
    // A second segment in the same request, aligned as well.
    uint64_t s1 = (s0 + n + 2 * align - 1) / align * align;
    auto more = blk_segment(s1, n, 0);
    segs.insert(segs.end(), more.begin(), more.end());
    detail += strfmt(" and %u at %llu in one request", n, static_cast<unsigned long long>(s1));
  }
  BlkReq r = b.req(kBlkDiscardReq, 0, segs, 0);
  r.what = "DISCARD of " + detail;
  BlkDone d = b.run1(r);
  p = b.problem(r, d);
  if (!p.empty()) return c.fail(name, p);
  BlkReq rd = b.read(s0, n, 2);
  BlkDone back = b.run1(rd);
  p = b.problem(rd, back);
  if (!p.empty()) return c.fail(name, "after DISCARD, " + p);
  std::string now = all_zero(back.data)                ? "reads back zeroes"
                    : compare(back.data, data).empty() ? "reads back the old data"
                                                       : "reads back other data";
  c.pass(name, "DISCARD of " + detail + " returned OK; the range " + now);
}

void check_blk_write_zeroes(Ctx& c) {
  const char* name = "blk-write-zeroes";
  Blk b(c);
  if (!b.has(kBlkWriteZeroes)) return c.skip(name, "VIRTIO_BLK_F_WRITE_ZEROES not offered");
  if (b.read_only()) return c.skip(name, "read-only device (see blk-read-only)");
  if (!big_enough(c, b, name)) return;
  const BlkConfig& k = b.cfg();
  uint32_t n = std::min<uint32_t>(16, k.max_write_zeroes_sectors);
  const uint64_t seed = run_seed() ^ 5;
  std::vector<std::string> done;
  // Without and (when the device may unmap) with the UNMAP flag.
  for (uint32_t flags : {0u, kUnmapFlag}) {
    if (flags == kUnmapFlag && !k.write_zeroes_may_unmap) continue;
    uint64_t s = area(b, 3) + 32 + (flags ? n + 4 : 0);
    // A pattern over [s - 1, s + n + 1), zeroes over [s, s + n).
    auto before = sectors_of(seed, s - 1, n + 2);
    BlkReq w = b.write(s - 1, before, 2);
    std::string p = b.problem(w, b.run1(w));
    if (!p.empty()) return c.fail(name, p);
    BlkReq r = b.req(kBlkWriteZeroesReq, 0, blk_segment(s, n, flags), 0);
    r.what = strfmt("WRITE_ZEROES%s of %u sectors at %llu", flags ? " (UNMAP)" : "", n,
                    static_cast<unsigned long long>(s));
    p = b.problem(r, b.run1(r));
    if (!p.empty()) return c.fail(name, p);
    BlkReq rd = b.read(s - 1, n + 2, 3, true);
    BlkDone back = b.run1(rd);
    p = b.problem(rd, back);
    if (!p.empty()) return c.fail(name, "after " + r.what + ", " + p);
    std::vector<uint8_t> want = before;
    std::fill(want.begin() + kSector, want.end() - kSector, 0);
    std::string diff = compare(back.data, want);
    if (!diff.empty())
      return c.fail(name, "after " + r.what + ", sectors " +
                              strfmt("%llu..%llu", static_cast<unsigned long long>(s - 1),
                                     static_cast<unsigned long long>(s + n)) +
                              " read back wrong (zeroes inside, the pattern around): " + diff);
    if (!c.opts().image.empty()) {
      if (b.has(kBlkFlush)) {
        std::string fp;
        flush(b, &fp);
        if (!fp.empty()) return c.fail(name, fp);
      }
      diff = compare(read_file(c.opts().image, (s - 1) * kSector, want.size()), want);
      if (!diff.empty()) return c.fail(name, "after " + r.what + ", the image file: " + diff);
    }
    done.push_back(r.what);
  }
  c.pass(name, join(done, ", ") + ": zeroes read back, neighbours intact" +
                   (c.opts().image.empty() ? "" : ", also in the file"));
}

void check_blk_out_of_range(Ctx& c) {
  const char* name = "blk-out-of-range";
  Blk b(c);
  const uint64_t cap = b.capacity();
  if (cap == 0) return c.skip(name, "capacity 0");
  int64_t size0 = c.opts().image.empty() ? 0 : file_size(c.opts().image);
  std::vector<BlkReq> reqs = {b.read(cap, 1), b.read(cap - 1, 2), b.read(uint64_t{1} << 62, 1)};
  reqs[0].what = "read of the sector after the last";
  reqs[1].what = "read of the last sector and the one after";
  reqs[2].what = "read at sector 2^62";
  const uint64_t seed = run_seed() ^ 6;
  std::vector<uint8_t> last_data;
  if (!b.read_only()) {
    // Known contents for the last sector, which a straddling write must not
    // change.
    last_data = sectors_of(seed, cap - 1, 1);
    BlkReq w = b.write(cap - 1, last_data);
    std::string p = b.problem(w, b.run1(w));
    if (!p.empty()) return c.fail(name, p);
    reqs.push_back(b.write(cap, sectors_of(seed ^ 1, cap, 1)));
    reqs.back().what = "write of the sector after the last";
    reqs.push_back(b.write(cap - 1, sectors_of(seed ^ 1, cap - 1, 2)));
    reqs.back().what = "write of the last sector and the one after";
    if (b.has(kBlkDiscard)) {
      reqs.push_back(b.req(kBlkDiscardReq, 0, blk_segment(cap, 1, 0), 0));
      reqs.back().what = "DISCARD after the last sector";
    }
    if (b.has(kBlkWriteZeroes)) {
      reqs.push_back(b.req(kBlkWriteZeroesReq, 0, blk_segment(cap - 1, 2, 0), 0));
      reqs.back().what = "WRITE_ZEROES over the last sector and the one after";
    }
  }
  std::vector<std::string> bad;
  for (const BlkReq& r : reqs) {
    BlkDone d = b.run1(r);
    c.note(r.what + ": " + (d.used ? status_name(d.status) : "not completed"));
    bool data_req =
        r.chain.readable.size() == kHeaderLen || get_le<uint32_t>(r.chain.readable, 0) == kBlkOut;
    if (data_req) {
      std::string p = b.problem(r, d, kStatusIoErr);
      if (!p.empty()) bad.push_back(p);
    } else if (!d.used || d.status == kStatusOk || d.status == kUnwritten) {
      bad.push_back(r.what + ": " + (d.used ? "status " + status_name(d.status) : "not completed") +
                    ", expected IOERR or UNSUPP");
    }
  }
  if (!last_data.empty()) {
    BlkReq rd = b.read(cap - 1, 1);
    BlkDone d = b.run1(rd);
    std::string p = b.problem(rd, d);
    if (!p.empty())
      bad.push_back(p);
    else if (!compare(d.data, last_data).empty())
      bad.push_back("the last sector changed after the failed requests over it");
  }
  if (!c.opts().image.empty() && file_size(c.opts().image) != size0)
    bad.push_back(strfmt("the image file grew from %lld to %lld bytes",
                         static_cast<long long>(size0),
                         static_cast<long long>(file_size(c.opts().image))));
  if (!bad.empty()) return c.fail(name, join(bad));
  c.pass(name, strfmt("%zu requests beyond capacity %llu failed", reqs.size(),
                      static_cast<unsigned long long>(cap)) +
                   (last_data.empty() ? "" : "; the last sector is unchanged"));
}

void check_blk_unknown_type(Ctx& c) {
  const char* name = "blk-unknown-type";
  Blk b(c);
  std::vector<std::string> got;
  for (uint32_t type : {99u, 0x7fffffffu}) {
    BlkReq r = b.req(type, 0, {}, kSector);
    r.what = strfmt("request type %u", type);
    BlkDone d = b.run1(r);
    std::string p = b.problem(r, d, kStatusUnsupp);
    if (!p.empty()) return c.fail(name, p);
    got.push_back(strfmt("%u", type));
  }
  c.pass(name, "types " + join(got, " and ") + " answered UNSUPP");
}

void check_blk_read_only(Ctx& c) {
  const char* name = "blk-read-only";
  Blk b(c);
  if (!b.read_only()) return c.skip(name, "VIRTIO_BLK_F_RO not offered");
  if (!big_enough(c, b, name)) return;
  const uint64_t s = area(b, 0);
  BlkReq rd = b.read(s, 4);
  BlkDone before = b.run1(rd);
  std::string p = b.problem(rd, before);
  if (!p.empty()) return c.fail(name, p);
  std::vector<uint8_t> file_before;
  if (!c.opts().image.empty()) file_before = read_file(c.opts().image, s * kSector, 4 * kSector);
  std::vector<BlkReq> reqs = {b.write(s, sectors_of(run_seed() ^ 7, s, 4), 2)};
  if (b.has(kBlkWriteZeroes)) {
    reqs.push_back(b.req(kBlkWriteZeroesReq, 0, blk_segment(s, 4, 0), 0));
    reqs.back().what = "WRITE_ZEROES";
  }
  if (b.has(kBlkDiscard)) {
    reqs.push_back(b.req(kBlkDiscardReq, 0, blk_segment(s, 4, 0), 0));
    reqs.back().what = "DISCARD";
  }
  std::vector<std::string> refused;
  for (const BlkReq& r : reqs) {
    BlkDone d = b.run1(r);
    bool write = get_le<uint32_t>(r.chain.readable, 0) == kBlkOut;
    if (write) {
      p = b.problem(r, d, kStatusIoErr);
      if (!p.empty()) return c.fail(name, p);
    } else if (!d.used || d.status == kStatusOk || d.status == kUnwritten) {
      return c.fail(name, r.what + " on a read-only device: " +
                              (d.used ? "status " + status_name(d.status) : "not completed"));
    }
    refused.push_back(r.what + " " + status_name(d.status));
  }
  BlkDone after = b.run1(rd);
  p = b.problem(rd, after);
  if (!p.empty()) return c.fail(name, p);
  std::string diff = compare(after.data, before.data);
  if (!diff.empty()) return c.fail(name, "the sectors changed: " + diff);
  if (!c.opts().image.empty()) {
    diff = compare(read_file(c.opts().image, s * kSector, 4 * kSector), file_before);
    if (!diff.empty()) return c.fail(name, "the image file changed: " + diff);
  }
  c.pass(name, join(refused, ", ") + "; the data is unchanged");
}

// A good write and read on `queue` of a fresh or the given device.
std::string good_request(Blk& b, uint64_t sector, uint64_t seed) {
  if (b.read_only()) {
    BlkReq rd = b.read(sector, 1);
    return b.problem(rd, b.run1(rd));
  }
  auto data = sectors_of(seed, sector, 1);
  BlkReq w = b.write(sector, data);
  std::string p = b.problem(w, b.run1(w));
  if (!p.empty()) return p;
  BlkReq rd = b.read(sector, 1);
  BlkDone d = b.run1(rd);
  p = b.problem(rd, d);
  if (!p.empty()) return p;
  std::string diff = compare(d.data, data);
  return diff.empty() ? "" : "read back: " + diff;
}

void check_blk_bad_chains(Ctx& c) {
  const char* name = "blk-bad-chains";
  const uint64_t seed = run_seed() ^ 8;
  struct Bad {
    const char* what;
    ChainSpec chain;
  };
  std::vector<Bad> bads;
  {
    ChainSpec s;  // an 8-byte header: type IN, no sector
    s.readable = blk_header(kBlkIn, 0);
    s.readable.resize(8);
    s.rcuts = {8};
    s.wcuts = {kSector, 1};
    bads.push_back({"an 8-byte request header", s});
  }
  {
    ChainSpec s;  // a write with nothing writable for the status
    s.readable = blk_header(kBlkOut, 0);
    auto data = sectors_of(seed, 0, 1);
    s.readable.insert(s.readable.end(), data.begin(), data.end());
    s.rcuts = {kHeaderLen, kSector};
    bads.push_back({"a write with no status byte", s});
  }
  {
    ChainSpec s;  // a read with nothing writable at all
    s.readable = blk_header(kBlkIn, 0);
    s.rcuts = {kHeaderLen};
    bads.push_back({"a read with no writable buffer", s});
  }
  std::vector<std::string> outcomes;
  for (const Bad& bad : bads) {
    std::string how, p;
    bool err = false, needs_reset = false;
    uint64_t sector = 0;
    {
      Blk b(c);
      if (!big_enough(c, b, name)) return;
      sector = area(b, 2) + 40;
      Posted posted = post_chain(b.dev(), b.dev().ring(0), bad.chain);
      b.dev().ring(0).kick();
      auto used = collect_heads(b.dev().ring(0), {posted.head}, 500);
      how = used.empty() ? "left unused" : strfmt("used (length %u)", used.begin()->second);
      if (!used.empty() && !posted.writable.empty()) {
        uint8_t status = read_writable(b.dev(), posted).back();
        if (status == kStatusOk)
          return c.fail(name, std::string(bad.what) + " completed with status OK");
        how += ", status " + status_name(status);
      }
      c.note(std::string(bad.what) + ": " + how);
      p = good_request(b, sector, seed);
      if (p.empty()) {
        outcomes.push_back(std::string(bad.what) + " " + how + ", the next request worked");
        continue;
      }
      // The device may instead stop the queue and say so (error eventfd or
      // NEEDS_RESET); then a new session must work.
      err = b.dev().ring(0).consume_err();
      if (b.dev().protocol_features() & bit(wire::PF_STATUS))
        needs_reset = (b.dev().fe().get_status() & wire::kStatusNeedsReset) != 0;
    }
    if (!err && !needs_reset)
      return c.fail(name, std::string("after ") + bad.what + " (" + how +
                              ") the next request failed and the device reported no error: " + p);
    Blk fresh(c);
    std::string p2 = good_request(fresh, sector, seed);
    if (!p2.empty())
      return c.fail(name, std::string("after ") + bad.what + " a new session failed: " + p2);
    outcomes.push_back(std::string(bad.what) + " " + how + ", the queue stopped with " +
                       (err ? "the error eventfd" : "NEEDS_RESET") + " and a new session worked");
  }
  c.pass(name, join(outcomes));
}

constexpr uint32_t kWrapSectors = 48;

void check_blk_ring_wrap(Ctx& c) {
  const char* name = "blk-ring-wrap";
  Blk b(c);
  if (!big_enough(c, b, name)) return;
  const uint32_t qs = c.opts().queue_size;
  const uint32_t total_reqs = 3 * qs;
  const uint32_t window = std::max<uint32_t>(1, std::min<uint32_t>(32, qs / 4));
  const uint64_t base = area(b, 1) + 32;  // kWrapSectors sectors, cycling
  const uint64_t seed = run_seed() ^ 9;
  uint32_t done = 0;
  auto t0 = Clock::now();
  // Each round writes `window` sectors (one per request) and reads them back.
  for (uint32_t round = 0; done < total_reqs; round++) {
    std::vector<BlkReq> writes, reads;
    std::vector<std::vector<uint8_t>> want;
    for (uint32_t i = 0; i < window; i++) {
      uint64_t s = base + (round * window + i) % kWrapSectors;
      want.push_back(sectors_of(seed + round, s, 1));
      writes.push_back(b.write(s, want.back(), 1 + i % 2, i % 3 == 0));
      reads.push_back(b.read(s, 1, 1 + i % 3, i % 3 == 1));
    }
    // The window is narrower than kWrapSectors, so no two requests of a
    // round touch the same sector.
    if (!b.read_only()) {
      auto wd = b.run(writes);
      for (size_t i = 0; i < writes.size(); i++) {
        std::string p = b.problem(writes[i], wd[i]);
        if (!p.empty()) return c.fail(name, strfmt("request %zu: ", done + i) + p);
      }
      done += window;
    }
    auto rd = b.run(reads);
    for (size_t i = 0; i < reads.size(); i++) {
      std::string p = b.problem(reads[i], rd[i]);
      if (!p.empty()) return c.fail(name, strfmt("request %zu: ", done + i) + p);
      if (!b.read_only()) {
        std::string diff = compare(rd[i].data, want[i]);
        if (!diff.empty()) return c.fail(name, strfmt("request %zu: ", done + i) + diff);
      }
    }
    done += window;
  }
  c.pass(name, strfmt("%u requests through a ring of %u (%u in flight at a time) in %d ms", done,
                      qs, window, ms_since(t0)));
}

// ==== virtio-net ====

// Feature bits (virtio 1.2, 5.1.3).
constexpr unsigned kNetMtu = 3;
constexpr unsigned kNetMac = 5;
constexpr unsigned kNetMrgRxbuf = 15;
constexpr unsigned kNetStatus = 16;
constexpr unsigned kNetMq = 22;

constexpr uint32_t kNetHdrLen = 12;  // virtio_net_hdr_mrg_rxbuf (VERSION_1)
constexpr uint32_t kRxBufLen = 1024;
constexpr uint32_t kBigFrame = 4000;
// Receive buffers when MRG_RXBUF is not negotiated: one holds any frame.
constexpr uint32_t kRxBigBufLen = kNetHdrLen + 8192;

struct Frame {
  uint32_t pair;
  std::vector<uint8_t> bytes;
};

// An Ethernet frame of `len` bytes: broadcast destination, a locally
// administered source naming the pair, the local experimental EtherType,
// then the pair, a sequence number and test bytes.
std::vector<uint8_t> make_frame(uint64_t seed, uint32_t pair, uint32_t seq, uint32_t len) {
  std::vector<uint8_t> f = pattern(seed, (uint64_t{pair} << 32) | seq, len);
  const uint8_t head[14] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0x02, 0x00, 0x00, 0x00, 0x00, static_cast<uint8_t>(pair),
                            0x88, 0xb5};
  std::memcpy(f.data(), head, std::min<size_t>(len, sizeof head));
  if (len >= 22) {
    put_le<uint32_t>(f, 14, pair);
    put_le<uint32_t>(f, 18, seq);
  }
  return f;
}

// Over every net probe of this run: frames that came in more than one
// buffer, and those seen with some of their buffers not yet in the used ring.
uint64_t g_merged_frames = 0;
uint64_t g_torn_frames = 0;

class Net {
 public:
  explicit Net(Ctx& c) : c_(c), d_(c.connect(), options(c)) {
    d_.bring_up();
    rx_.resize(pairs());
    spare_.resize(pairs());
  }

  Device& dev() { return d_; }
  bool has(unsigned f) const { return (d_.features() & bit(f)) != 0; }
  bool mergeable() const { return has(kNetMrgRxbuf); }
  uint32_t pairs() const { return static_cast<uint32_t>(d_.num_rings() / 2); }
  DriverRing& rxq(uint32_t p) { return d_.ring(2 * p); }
  DriverRing& txq(uint32_t p) { return d_.ring(2 * p + 1); }
  uint32_t rx_buf_len() const { return mergeable() ? kRxBufLen : kRxBigBufLen; }

  // Tops the pair's receive ring up to `n` posted buffers and kicks.
  void post_rx(uint32_t p, size_t n) {
    auto& posted = rx_[p];
    DriverRing& r = rxq(p);
    while (posted.size() < n && r.free_descriptors() > 0) {
      uint64_t gpa;
      if (!spare_[p].empty()) {
        gpa = spare_[p].back();
        spare_[p].pop_back();
      } else {
        gpa = d_.mem().alloc(rx_buf_len(), 64);
      }
      d_.mem().fill(gpa, kUnwritten, rx_buf_len());
      int head = r.add_chain({{gpa, rx_buf_len(), true}});
      posted[head] = gpa;
    }
    r.kick();
  }

  // Transmits `frame` on pair `p` in chain shape `shape` (0: header and
  // frame in one buffer, 1: header, frame; 2: header, frame in three
  // buffers, indirect when negotiated). Returns the head.
  int send(uint32_t p, const std::vector<uint8_t>& frame, unsigned shape) {
    std::vector<uint8_t> bytes(kNetHdrLen, 0);
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    uint32_t n = static_cast<uint32_t>(frame.size());
    ChainSpec s;
    s.readable = std::move(bytes);
    if (shape % 3 == 0) {
      s.rcuts = {kNetHdrLen + n};
    } else {
      s.rcuts = {kNetHdrLen};
      for (uint32_t x : split(n, shape % 3 == 1 ? 1 : 3, UINT32_MAX)) s.rcuts.push_back(x);
    }
    s.indirect = shape % 3 == 2 && has(wire::kFeatRingIndirectDesc);
    return post_chain(d_, txq(p), s).head;
  }

  // Receives one frame from pair `p`'s receive ring, waiting up to
  // `timeout_ms`. Returns false on timeout; sets *problem when what arrived
  // is malformed.
  bool receive(uint32_t p, int timeout_ms, std::vector<uint8_t>* frame, uint16_t* buffers,
               std::string* problem) {
    DriverRing& r = rxq(p);
    auto next = [&](int wait) -> std::optional<Used> {
      auto u = r.get_used();
      if (!u && wait > 0 && r.wait_used(wait)) u = r.get_used();
      return u;
    };
    auto first = next(timeout_ms);
    if (!first) return false;
    frame->clear();
    std::vector<uint8_t> hdr;
    uint16_t want = 1;
    for (uint16_t i = 0; i < want; i++) {
      auto u = i == 0 ? first : next(c_.opts().io_timeout_ms);
      if (!u) {
        *problem = strfmt("the frame announced %u buffers but only %u were used", want, i);
        return true;
      }
      auto it = rx_[p].find(static_cast<int>(u->first));
      if (it == rx_[p].end()) {
        *problem = strfmt("used id %u is not a posted receive buffer", u->first);
        return true;
      }
      uint32_t len = u->second;
      uint64_t gpa = it->second;
      rx_[p].erase(it);
      spare_[p].push_back(gpa);
      if (len > rx_buf_len()) {
        *problem = strfmt("used length %u exceeds the %u-byte buffer", len, rx_buf_len());
        return true;
      }
      std::vector<uint8_t> buf(len);
      d_.mem().read(gpa, buf.data(), len);
      if (i == 0) {
        if (len < kNetHdrLen) {
          *problem = strfmt("used length %u is shorter than the %u-byte header", len, kNetHdrLen);
          return true;
        }
        hdr.assign(buf.begin(), buf.begin() + kNetHdrLen);
        buf.erase(buf.begin(), buf.begin() + kNetHdrLen);
        uint16_t nb = get_le<uint16_t>(hdr, 10);
        if (mergeable()) {
          if (nb == 0) {
            *problem = "num_buffers is 0";
            return true;
          }
          want = nb;
          // A driver reads a merged frame's buffers as soon as it sees the
          // first; Linux drops the frame when they are not all published.
          if (nb > 1) g_merged_frames++;
          if (static_cast<uint16_t>(r.used_idx() - r.last_used_idx()) < nb - 1) g_torn_frames++;
        }
        if (hdr[0] != 0 || hdr[1] != 0) {
          *problem = strfmt("header flags 0x%02x gso_type 0x%02x on a plain frame", hdr[0], hdr[1]);
          return true;
        }
      }
      frame->insert(frame->end(), buf.begin(), buf.end());
    }
    *buffers = want;
    return true;
  }

  // Waits for the given transmit heads; returns "" or what went wrong.
  std::string tx_done(uint32_t p, const std::set<int>& heads, int timeout_ms) {
    auto used = collect_heads(txq(p), heads, timeout_ms);
    for (auto& [h, len] : used) {
      if (len != 0)
        return strfmt("transmit chain %d used with length %u (the device writes nothing there)", h,
                      len);
    }
    if (used.size() != heads.size())
      return strfmt("%zu of %zu transmit chains on pair %u not used within %d ms",
                    heads.size() - used.size(), heads.size(), p, timeout_ms);
    return {};
  }

 private:
  static DeviceOptions options(Ctx& c) {
    DeviceOptions o = c.device_options(32u << 20);
    o.features |= bit(kNetMtu) | bit(kNetMac) | bit(kNetMrgRxbuf) | bit(kNetStatus) | bit(kNetMq);
    return o;
  }

  Ctx& c_;
  Device d_;
  std::vector<std::map<int, uint64_t>> rx_;   // per pair: posted head -> buffer
  std::vector<std::vector<uint64_t>> spare_;  // per pair: receive buffers to reuse
};

std::string net_features(const Net& n) {
  std::vector<std::string> f;
  const std::pair<unsigned, const char*> names[] = {{kNetMrgRxbuf, "MRG_RXBUF"},
                                                    {kNetMq, "MQ"},
                                                    {kNetMac, "MAC"},
                                                    {kNetMtu, "MTU"},
                                                    {kNetStatus, "STATUS"},
                                                    {wire::kFeatRingEventIdx, "EVENT_IDX"},
                                                    {wire::kFeatRingIndirectDesc, "INDIRECT_DESC"}};
  for (auto [b, s] : names)
    if (n.has(b)) f.push_back(s);
  return f.empty() ? "none" : join(f, " ");
}

void check_net_setup(Ctx& c) {
  const char* name = "net-setup";
  Net n(c);
  std::vector<std::string> bad, facts;
  facts.push_back(strfmt("%u queue pair(s)", n.pairs()));
  facts.push_back("negotiated " + net_features(n));
  if (!n.has(wire::kFeatVersion1)) bad.push_back("VIRTIO_F_VERSION_1 not offered");
  if (n.dev().protocol_features() & bit(wire::PF_CONFIG)) {
    std::vector<uint8_t> cfg;
    try {
      cfg = n.dev().fe().get_config(0, 12);
    } catch (const Error& e) {
      if (e.code() != -EIO) throw;
    }
    if (!cfg.empty()) {
      if (n.has(kNetMac))
        facts.push_back(strfmt("mac %02x:%02x:%02x:%02x:%02x:%02x", cfg[0], cfg[1], cfg[2], cfg[3],
                               cfg[4], cfg[5]));
      if (n.has(kNetMq)) {
        uint16_t maxp = get_le<uint16_t>(cfg, 8);
        facts.push_back(strfmt("max_virtqueue_pairs %u", maxp));
        if (maxp < c.opts().queues)
          bad.push_back(
              strfmt("max_virtqueue_pairs %u, fewer than --queues=%u", maxp, c.opts().queues));
      }
      if (n.has(kNetMtu)) {
        uint16_t mtu = get_le<uint16_t>(cfg, 10);
        facts.push_back(strfmt("mtu %u", mtu));
        if (mtu < 68) bad.push_back(strfmt("mtu %u is below 68", mtu));
      }
    } else if (n.has(kNetMac) || n.has(kNetMq) || n.has(kNetMtu)) {
      bad.push_back("MAC, MQ or MTU offered but GET_CONFIG of 12 bytes was refused");
    }
  } else if (n.has(kNetMac) || n.has(kNetMtu)) {
    bad.push_back("MAC or MTU offered without the CONFIG protocol feature to read them");
  }
  if (!n.mergeable()) facts.push_back("without MRG_RXBUF every frame must fit one buffer");
  if (!bad.empty()) return c.fail(name, join(bad));
  c.pass(name, join(facts, ", "));
}

void check_net_loopback(Ctx& c) {
  const char* name = "net-loopback";
  Net n(c);
  const uint64_t seed = run_seed() ^ 10;
  const std::vector<uint32_t> sizes = {60, 1514, kBigFrame};
  std::vector<std::vector<Frame>> sent(n.pairs());
  std::vector<std::set<int>> heads(n.pairs());
  // Every pair at once: receive buffers first, then the frames.
  for (uint32_t p = 0; p < n.pairs(); p++) n.post_rx(p, 16);
  for (uint32_t p = 0; p < n.pairs(); p++) {
    for (uint32_t i = 0; i < sizes.size(); i++) {
      auto f = make_frame(seed, p, i, sizes[i]);
      heads[p].insert(n.send(p, f, i + p));
      sent[p].push_back({p, std::move(f)});
    }
    n.txq(p).kick();
  }
  uint16_t most_buffers = 0;
  for (uint32_t p = 0; p < n.pairs(); p++) {
    for (size_t i = 0; i < sent[p].size(); i++) {
      std::vector<uint8_t> got;
      uint16_t bufs = 0;
      std::string problem;
      const auto& want = sent[p][i].bytes;
      if (!n.receive(p, c.opts().io_timeout_ms, &got, &bufs, &problem))
        return c.fail(name, strfmt("pair %u: the %zu-byte frame (#%zu) did not arrive on "
                                   "queue %u within %d ms",
                                   p, want.size(), i, 2 * p, c.opts().io_timeout_ms));
      if (!problem.empty())
        return c.fail(name, strfmt("pair %u, %zu-byte frame: ", p, want.size()) + problem);
      std::string diff = compare(got, want);
      if (!diff.empty()) {
        if (got.size() >= 22)
          diff += strfmt(" (received frame says pair %u seq %u)", get_le<uint32_t>(got, 14),
                         get_le<uint32_t>(got, 18));
        return c.fail(name, strfmt("pair %u, frame #%zu of %zu bytes: ", p, i, want.size()) + diff);
      }
      most_buffers = std::max(most_buffers, bufs);
    }
    std::string t = n.tx_done(p, heads[p], c.opts().io_timeout_ms);
    if (!t.empty()) return c.fail(name, t);
    // Nothing else may arrive on this pair.
    std::vector<uint8_t> extra;
    uint16_t bufs = 0;
    std::string problem;
    if (n.receive(p, 100, &extra, &bufs, &problem))
      return c.fail(name, strfmt("pair %u received an extra %zu-byte frame", p, extra.size()));
  }
  c.pass(name, strfmt("%u pair(s): frames of 60, 1514 and %u bytes came back byte for byte",
                      n.pairs(), kBigFrame) +
                   (n.mergeable() ? strfmt(", the largest in %u merged buffers", most_buffers)
                                  : " (no MRG_RXBUF: one buffer each)"));
}

void check_net_no_rx_buffers(Ctx& c) {
  const char* name = "net-no-rx-buffers";
  Net n(c);
  const uint64_t seed = run_seed() ^ 11;
  const uint32_t last = n.pairs() - 1;
  auto a = make_frame(seed, last, 1, 1000);
  int ha = n.send(last, a, 0);
  n.txq(last).kick();
  auto early = collect_heads(n.txq(last), {ha}, 300);
  n.post_rx(last, 8);
  std::vector<uint8_t> got;
  uint16_t bufs = 0;
  std::string problem;
  bool delivered = n.receive(last, 500, &got, &bufs, &problem);
  if (delivered && !problem.empty()) return c.fail(name, problem);
  if (delivered && !compare(got, a).empty())
    return c.fail(name,
                  "the frame sent before receive buffers were posted came back "
                  "different: " +
                      compare(got, a));
  auto b = make_frame(seed, last, 2, 200);
  int hb = n.send(last, b, 1);
  n.txq(last).kick();
  bool got_b = false;
  for (int i = 0; i < 2 && !got_b; i++) {
    if (!n.receive(last, c.opts().io_timeout_ms, &got, &bufs, &problem)) break;
    if (!problem.empty()) return c.fail(name, problem);
    if (!delivered && compare(got, a).empty()) {
      delivered = true;  // delivered late, with the next frame
      continue;
    }
    std::string diff = compare(got, b);
    if (!diff.empty()) return c.fail(name, "the next frame came back different: " + diff);
    got_b = true;
  }
  if (!got_b)
    return c.fail(name, strfmt("after receive buffers were posted, a new frame did not come "
                               "back within %d ms",
                               c.opts().io_timeout_ms));
  std::set<int> pending = {hb};
  if (early.empty()) pending.insert(ha);
  std::string t = n.tx_done(last, pending, c.opts().io_timeout_ms);
  if (!t.empty()) return c.fail(name, t);
  c.pass(name, strfmt("pair %u: a frame sent with no receive buffers was %s (transmit chain %s); "
                      "the next frame came back",
                      last, delivered ? "delivered once buffers were posted" : "dropped",
                      early.empty() ? "held until then" : "completed at once"));
}

void check_net_ring_wrap(Ctx& c) {
  const char* name = "net-ring-wrap";
  Net n(c);
  const uint32_t qs = c.opts().queue_size;
  const uint32_t total_frames = 3 * qs;
  const uint32_t window = std::max<uint32_t>(1, std::min<uint32_t>(16, qs / 8));
  const uint64_t seed = run_seed() ^ 12;
  const uint32_t sizes[] = {60, 61, 128, 999, 1514, 1515, 3000};
  const size_t rx_posted = std::min<size_t>(qs, 64);
  auto t0 = Clock::now();
  uint32_t seq = 0;
  uint64_t bytes = 0;
  while (seq < total_frames) {
    for (uint32_t p = 0; p < n.pairs(); p++) n.post_rx(p, rx_posted);
    std::vector<std::vector<std::vector<uint8_t>>> sent(n.pairs());
    std::vector<std::set<int>> heads(n.pairs());
    for (uint32_t p = 0; p < n.pairs(); p++) {
      for (uint32_t i = 0; i < window; i++) {
        uint32_t len = sizes[(seq + i + p) % std::size(sizes)];
        sent[p].push_back(make_frame(seed, p, seq + i, len));
        heads[p].insert(n.send(p, sent[p].back(), seq + i));
      }
      n.txq(p).kick();
    }
    for (uint32_t p = 0; p < n.pairs(); p++) {
      for (uint32_t i = 0; i < window; i++) {
        std::vector<uint8_t> got;
        uint16_t bufs = 0;
        std::string problem;
        if (!n.receive(p, c.opts().io_timeout_ms, &got, &bufs, &problem))
          return c.fail(name, strfmt("pair %u: frame %u of %zu bytes did not come back within "
                                     "%d ms",
                                     p, seq + i, sent[p][i].size(), c.opts().io_timeout_ms));
        if (!problem.empty())
          return c.fail(name, strfmt("pair %u frame %u: ", p, seq + i) + problem);
        std::string diff = compare(got, sent[p][i]);
        if (!diff.empty()) return c.fail(name, strfmt("pair %u frame %u: ", p, seq + i) + diff);
        bytes += got.size();
      }
      std::string t = n.tx_done(p, heads[p], c.opts().io_timeout_ms);
      if (!t.empty()) return c.fail(name, t);
    }
    seq += window;
  }
  c.pass(name, strfmt("%u frames per pair (%llu bytes in all) through rings of %u in %d ms", seq,
                      static_cast<unsigned long long>(bytes), qs, ms_since(t0)));
}

// Rounds of net-merged-publish: each catches a device that publishes a
// frame's buffers one by one with a fair chance, not a certainty.
constexpr int kPublishRounds = 8;

void check_net_merged_publish(Ctx& c) {
  const char* name = "net-merged-publish";
  Net n(c);
  if (!n.mergeable()) return c.skip(name, "MRG_RXBUF not negotiated");
  // Frames of four buffers each. While the device delivers them, sample
  // used->idx as fast as possible, as a driver polling the ring would see
  // it: every value seen must fall between two frames, never inside one.
  const uint32_t frames = std::max<uint32_t>(1, std::min<uint32_t>(16, c.opts().queue_size / 8));
  const uint64_t seed = run_seed() ^ 13;
  DriverRing& rx = n.rxq(0);
  size_t seen_total = 0, inside = 0;
  uint32_t buffers = 0;
  for (int round = 0; round < kPublishRounds; round++) {
    n.post_rx(0, std::min<size_t>(c.opts().queue_size, 4 * frames + 8));
    std::vector<std::vector<uint8_t>> sent;
    std::set<int> heads;
    for (uint32_t i = 0; i < frames; i++) {
      sent.push_back(make_frame(seed, round, i, kBigFrame));
      heads.insert(n.send(0, sent.back(), i));
    }
    const uint16_t start = rx.last_used_idx();
    std::vector<uint16_t> seen;
    uint16_t last = start;
    n.txq(0).kick();
    auto deadline = Clock::now() + std::chrono::milliseconds(c.opts().io_timeout_ms);
    auto quiet_since = Clock::now();
    for (uint64_t spins = 0;; spins++) {
      uint16_t idx = rx.used_idx();
      if (idx != last) {
        seen.push_back(static_cast<uint16_t>(idx - start));
        last = idx;
        quiet_since = Clock::now();
      }
      if (spins % 4096 == 0) {
        auto now = Clock::now();
        // Done once the index stood still for 20 ms (or time is up).
        if (now > deadline || (!seen.empty() && now - quiet_since > std::chrono::milliseconds(20)))
          break;
      }
    }
    std::set<uint16_t> boundaries = {0};
    uint16_t at = 0;
    for (uint32_t i = 0; i < frames; i++) {
      std::vector<uint8_t> got;
      uint16_t bufs = 0;
      std::string problem;
      if (!n.receive(0, c.opts().io_timeout_ms, &got, &bufs, &problem))
        return c.fail(name, strfmt("round %d: frame %u of %u did not come back within %d ms", round,
                                   i, frames, c.opts().io_timeout_ms));
      if (!problem.empty()) return c.fail(name, strfmt("round %d, frame %u: ", round, i) + problem);
      std::string diff = compare(got, sent[i]);
      if (!diff.empty()) return c.fail(name, strfmt("round %d, frame %u: ", round, i) + diff);
      at = static_cast<uint16_t>(at + bufs);
      boundaries.insert(at);
    }
    std::string t = n.tx_done(0, heads, c.opts().io_timeout_ms);
    if (!t.empty()) return c.fail(name, t);
    for (uint16_t v : seen)
      if (!boundaries.count(v)) inside++;
    seen_total += seen.size();
    buffers += at;
  }
  c.note(strfmt("%zu used->idx values seen for %u buffers, %zu inside a frame", seen_total, buffers,
                inside));
  if (inside)
    return c.fail(name, strfmt("used->idx was seen %zu time(s) in the middle of a frame's "
                               "buffers (%d x %u frames of %u bytes): it must move past all of a "
                               "frame's buffers at once, or a driver finds buffers missing "
                               "(Linux drops such frames)",
                               inside, kPublishRounds, frames, kBigFrame));
  // The other net probes count frames whose first buffer they found alone.
  if (g_torn_frames)
    return c.fail(name, strfmt("%llu of %llu merged frames had their first buffer in the used "
                               "ring before the others (used->idx must move past all of a "
                               "frame's buffers at once; a Linux driver drops such frames)",
                               static_cast<unsigned long long>(g_torn_frames),
                               static_cast<unsigned long long>(g_merged_frames)));
  c.pass(name, strfmt("%d x %u frames in %u buffers, used->idx seen %zu times, always between "
                      "frames; %llu merged frames in the other probes",
                      kPublishRounds, frames, buffers, seen_total,
                      static_cast<unsigned long long>(g_merged_frames)));
}

}  // namespace

bool known_device(const std::string& device) {
  return device.empty() || device == "blk" || device == "net";
}

const std::vector<Check>& device_checks(const std::string& device) {
  static const std::vector<Check> kNone;
  static const std::vector<Check> kBlk = {
      {{"blk-config"}, check_blk_config},
      {{"blk-get-id"}, check_blk_get_id},
      {{"blk-read-write"}, check_blk_read_write},
      {{"blk-queues"}, check_blk_queues},
      {{"blk-flush"}, check_blk_flush},
      {{"blk-image"}, check_blk_image},
      {{"blk-discard"}, check_blk_discard},
      {{"blk-write-zeroes"}, check_blk_write_zeroes},
      {{"blk-out-of-range"}, check_blk_out_of_range},
      {{"blk-unknown-type"}, check_blk_unknown_type},
      {{"blk-read-only"}, check_blk_read_only},
      {{"blk-ring-wrap"}, check_blk_ring_wrap},
      {{"blk-bad-chains"}, check_blk_bad_chains},
  };
  static const std::vector<Check> kNet = {
      {{"net-setup"}, check_net_setup},
      {{"net-loopback"}, check_net_loopback},
      {{"net-no-rx-buffers"}, check_net_no_rx_buffers},
      {{"net-ring-wrap"}, check_net_ring_wrap},
      {{"net-merged-publish"}, check_net_merged_publish},
  };
  if (device == "blk") return kBlk;
  if (device == "net") return kNet;
  return kNone;
}

}  // namespace vhu::check
