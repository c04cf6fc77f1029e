// SPDX-License-Identifier: Apache-2.0
// Guest memory regions and address translation.
#include <sys/uio.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "common/error.h"
#include "memory/memory.h"

// Last: cmocka defines macros (fail, skip) that clash with the standard library.
#include "test_util.h"

using vhu::MemoryTable;
using vhu::Region;
using vhu::UniqueFd;
namespace wire = vhu::wire;
using vhu_test::count_open_fds;
using vhu_test::make_memfd;

namespace {

// Content of byte `off` of test file number `file`.
uint8_t byte_at(int file, uint64_t off) {
  return static_cast<uint8_t>((off * 13 + static_cast<uint64_t>(file) * 50 + (off >> 8)) & 0xff);
}

// A memfd of `size` bytes filled with byte_at(file, ...).
int patterned_memfd(int file, uint64_t size) {
  int fd = make_memfd(size);
  std::vector<uint8_t> buf(size);
  for (uint64_t i = 0; i < size; i++) buf[i] = byte_at(file, i);
  assert_int_equal(::pwrite(fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(size));
  return fd;
}

wire::MemRegion mr(uint64_t gpa, uint64_t size, uint64_t uva, uint64_t off) {
  return wire::MemRegion{gpa, size, uva, off};
}

using vhu_test::thrown_code;

// A region over a fresh memfd of `file_size` bytes; the fd is owned by it.
std::shared_ptr<Region> region_over(uint64_t file_size, const wire::MemRegion& d) {
  return std::make_shared<Region>(d, UniqueFd(make_memfd(file_size)));
}

// ---- Region ----

void region_rejects_bad_geometry(void**) {
  const uint64_t kPage = 4096;
  int before = count_open_fds();
  struct Case {
    uint64_t file_size;
    wire::MemRegion d;
  } const cases[] = {
      {kPage, mr(0, 0, 0x1000, 0)},                     // size 0
      {kPage, mr(0, kPage, 0x1000, UINT64_MAX - 100)},  // offset + size overflows
      {kPage, mr(0, UINT64_MAX, 0x1000, 2)},            // same, huge size
      {kPage, mr(UINT64_MAX - 100, kPage, 0x1000, 0)},  // gpa + size overflows
      {kPage, mr(0, kPage, UINT64_MAX - 100, 0)},       // uva + size overflows
      {kPage, mr(0, 2 * kPage, 0x1000, 0)},             // file too small
      {kPage, mr(0, kPage, 0x1000, 1)},                 // offset pushes past the end
      {2 * kPage, mr(0, kPage, 0x1000, kPage + 1)},     // same, unaligned offset
      {0, mr(0, kPage, 0x1000, 0)},                     // empty file
  };
  for (const auto& c : cases) {
    int fd = make_memfd(c.file_size);
    assert_int_equal(thrown_code([&] { Region r(c.d, UniqueFd(fd)); }), -EINVAL);
  }
  // A region without a file descriptor.
  assert_int_equal(thrown_code([&] { Region r(mr(0, kPage, 0x1000, 0), UniqueFd()); }), -EINVAL);
  // Every fd handed to a rejected region was closed.
  assert_int_equal(count_open_fds(), before);
}

void region_accepts_exact_fits(void**) {
  int before = count_open_fds();
  {
    // File exactly offset + size.
    auto r = region_over(0x3000, mr(0x100000, 0x2000, 0x7000000, 0x1000));
    assert_int_equal(r->gpa(), 0x100000);
    assert_int_equal(r->size(), 0x2000);
    assert_int_equal(r->uva(), 0x7000000);
    assert_int_equal(r->mmap_offset(), 0x1000);
    assert_non_null(r->host());
    // The last GPA and UVA of the address space may be used.
    auto top = region_over(0x1000, mr(UINT64_MAX - 0xfff, 0x1000, UINT64_MAX - 0xfff, 0));
    assert_int_equal(top->gpa() + (top->size() - 1), UINT64_MAX);
  }
  // The fd is not kept once mapped, and the mappings are released.
  assert_int_equal(count_open_fds(), before);
}

void region_maps_from_its_offset(void**) {
  const uint64_t offsets[] = {0, 0x1000, 100, 0x2fff};
  for (uint64_t off : offsets) {
    int fd = patterned_memfd(1, 0x4000);
    Region r(mr(0, 0x4000 - off, 0x1000, off), UniqueFd(fd));
    assert_int_equal(r.host()[0], byte_at(1, off));
    assert_int_equal(r.host()[r.size() - 1], byte_at(1, 0x3fff));
  }
}

void region_writes_reach_the_file(void**) {
  int fd = make_memfd(0x2000);
  int keep = ::dup(fd);
  {
    Region r(mr(0, 0x1000, 0x1000, 0x1000), UniqueFd(fd));
    r.host()[5] = 0x5a;
  }
  uint8_t b = 0;
  assert_int_equal(::pread(keep, &b, 1, 0x1005), 1);
  assert_int_equal(b, 0x5a);
  ::close(keep);
}

// ---- MemoryTable over three regions ----
//   A: gpa 0x10000..0x13fff  file 0 at offset 0
//   B: gpa 0x14000..0x17fff  file 1 at offset 0x1000 (adjacent to A)
//   hole 0x18000..0x3ffff
//   C: gpa 0x40000..0x40fff  file 2 at offset 0
constexpr uint64_t kGpaA = 0x10000, kGpaB = 0x14000, kGpaC = 0x40000;
constexpr uint64_t kSizeAB = 0x4000, kSizeC = 0x1000, kOffB = 0x1000;
constexpr uint64_t kUvaA = 0x7f0000000000, kUvaB = 0x7f0000100000, kUvaC = 0x7f0000200000;

struct Tables {
  std::shared_ptr<Region> a, b, c;
  MemoryTable table;
  int file[3];  // dups for checking content
};

int setup_tables(void** state) {
  auto* t = new Tables;
  int fa = patterned_memfd(0, kSizeAB);
  int fb = patterned_memfd(1, kOffB + kSizeAB);
  int fc = patterned_memfd(2, kSizeC);
  t->file[0] = ::dup(fa);
  t->file[1] = ::dup(fb);
  t->file[2] = ::dup(fc);
  t->a = std::make_shared<Region>(mr(kGpaA, kSizeAB, kUvaA, 0), UniqueFd(fa));
  t->b = std::make_shared<Region>(mr(kGpaB, kSizeAB, kUvaB, kOffB), UniqueFd(fb));
  t->c = std::make_shared<Region>(mr(kGpaC, kSizeC, kUvaC, 0), UniqueFd(fc));
  // Given out of order on purpose.
  t->table = MemoryTable({t->c, t->a, t->b});
  *state = t;
  return 0;
}

int teardown_tables(void** state) {
  auto* t = static_cast<Tables*>(*state);
  for (int fd : t->file) ::close(fd);
  delete t;
  return 0;
}

Tables& T(void** state) { return *static_cast<Tables*>(*state); }

void table_is_sorted_by_gpa(void** state) {
  const auto& regs = T(state).table.regions();
  assert_int_equal(T(state).table.size(), 3);
  assert_int_equal(regs[0]->gpa(), kGpaA);
  assert_int_equal(regs[1]->gpa(), kGpaB);
  assert_int_equal(regs[2]->gpa(), kGpaC);
}

void gpa_to_host_edges(void** state) {
  const MemoryTable& m = T(state).table;
  uint8_t* a = T(state).a->host();
  uint8_t* b = T(state).b->host();
  assert_ptr_equal(m.gpa_to_host(kGpaA, 1), a);
  assert_ptr_equal(m.gpa_to_host(kGpaA, kSizeAB), a);
  assert_ptr_equal(m.gpa_to_host(kGpaA + kSizeAB - 1, 1), a + kSizeAB - 1);
  assert_int_equal(*m.gpa_to_host(kGpaA + 77, 1), byte_at(0, 77));
  // Whole-region length plus one, and a range crossing into the adjacent
  // region: not inside ONE region.
  assert_null(m.gpa_to_host(kGpaA, kSizeAB + 1));
  assert_null(m.gpa_to_host(kGpaA + kSizeAB - 1, 2));
  // B starts right after A, at its own offset.
  assert_ptr_equal(m.gpa_to_host(kGpaB, 1), b);
  assert_int_equal(*m.gpa_to_host(kGpaB, 1), byte_at(1, kOffB));
  // One past the end of B is the hole.
  assert_null(m.gpa_to_host(kGpaB + kSizeAB, 1));
  assert_null(m.gpa_to_host(kGpaB + kSizeAB - 1, 2));
  assert_null(m.gpa_to_host(0x30000, 1));
  // Below the first region, and after the last one.
  assert_null(m.gpa_to_host(0, 1));
  assert_null(m.gpa_to_host(kGpaA - 1, 1));
  assert_null(m.gpa_to_host(kGpaC + kSizeC, 1));
  assert_null(m.gpa_to_host(UINT64_MAX, 1));
  // Lengths that would wrap.
  assert_null(m.gpa_to_host(kGpaA, UINT64_MAX));
  assert_null(m.gpa_to_host(kGpaC + 1, UINT64_MAX));
}

void gpa_span_reports_contiguous_bytes(void** state) {
  const MemoryTable& m = T(state).table;
  uint64_t avail = 99;
  assert_ptr_equal(m.gpa_span(kGpaA + 0x10, &avail), T(state).a->host() + 0x10);
  assert_int_equal(avail, kSizeAB - 0x10);
  assert_non_null(m.gpa_span(kGpaC + kSizeC - 1, &avail));
  assert_int_equal(avail, 1);
  assert_null(m.gpa_span(kGpaC + kSizeC, &avail));
  assert_int_equal(avail, 0);
}

void map_range_splits_across_regions(void** state) {
  const MemoryTable& m = T(state).table;
  std::vector<iovec> iov;
  assert_true(m.map_range(kGpaB - 0x10, 0x30, iov, 16));
  assert_int_equal(iov.size(), 2);
  assert_ptr_equal(iov[0].iov_base, T(state).a->host() + kSizeAB - 0x10);
  assert_int_equal(iov[0].iov_len, 0x10);
  assert_ptr_equal(iov[1].iov_base, T(state).b->host());
  assert_int_equal(iov[1].iov_len, 0x20);
  const auto* p0 = static_cast<const uint8_t*>(iov[0].iov_base);
  const auto* p1 = static_cast<const uint8_t*>(iov[1].iov_base);
  for (uint64_t i = 0; i < 0x10; i++) assert_int_equal(p0[i], byte_at(0, kSizeAB - 0x10 + i));
  for (uint64_t i = 0; i < 0x20; i++) assert_int_equal(p1[i], byte_at(1, kOffB + i));

  // Appends to what is there; a range inside one region is one iovec.
  assert_true(m.map_range(kGpaC, kSizeC, iov, 16));
  assert_int_equal(iov.size(), 3);
  assert_int_equal(iov[2].iov_len, kSizeC);
  // Both whole regions A and B.
  iov.clear();
  assert_true(m.map_range(kGpaA, 2 * kSizeAB, iov, 2));
  assert_int_equal(iov.size(), 2);
  assert_int_equal(iov[0].iov_len + iov[1].iov_len, 2 * kSizeAB);
}

void map_range_failures_leave_output_unchanged(void** state) {
  const MemoryTable& m = T(state).table;
  int sentinel = 0;
  const std::vector<iovec> before = {iovec{&sentinel, 4}};
  auto check = [&](uint64_t gpa, uint64_t len, size_t max_iov) {
    std::vector<iovec> iov = before;
    assert_false(m.map_range(gpa, len, iov, max_iov));
    assert_int_equal(iov.size(), 1);
    assert_ptr_equal(iov[0].iov_base, &sentinel);
    assert_int_equal(iov[0].iov_len, 4);
  };
  check(kGpaB + kSizeAB - 0x10, 0x20, 16);  // runs into the hole
  check(kGpaA - 0x10, 0x20, 16);            // starts before A
  check(0x30000, 0x10, 16);                 // entirely in the hole
  check(kGpaA, 2 * kSizeAB + 1, 16);        // one byte past B
  check(kGpaA, 0, 16);                      // empty
  check(UINT64_MAX - 1, 4, 16);             // wraps
  check(kGpaA, UINT64_MAX, 16);             // wraps
  // The iovec limit counts what was already in the vector.
  check(kGpaB - 0x10, 0x20, 2);
  check(kGpaA, 0x10, 1);
  std::vector<iovec> iov = before;
  assert_true(m.map_range(kGpaB - 0x10, 0x20, iov, 3));
  assert_int_equal(iov.size(), 3);
}

void uva_to_host_edges(void** state) {
  const MemoryTable& m = T(state).table;
  assert_ptr_equal(m.uva_to_host(kUvaA, 1), T(state).a->host());
  assert_ptr_equal(m.uva_to_host(kUvaB + 8, 8), T(state).b->host() + 8);
  assert_ptr_equal(m.uva_to_host(kUvaC + kSizeC - 1, 1), T(state).c->host() + kSizeC - 1);
  assert_ptr_equal(m.uva_to_host(kUvaC, kSizeC), T(state).c->host());
  assert_null(m.uva_to_host(kUvaC, kSizeC + 1));
  assert_null(m.uva_to_host(kUvaC + kSizeC, 1));
  assert_null(m.uva_to_host(kUvaA - 1, 1));
  assert_null(m.uva_to_host(kUvaA + kSizeAB - 1, 2));  // A and B are not adjacent in UVA
  assert_null(m.uva_to_host(kUvaA, UINT64_MAX));
  assert_null(m.uva_to_host(0, 1));
  // A GPA is not a UVA.
  assert_null(m.uva_to_host(kGpaA, 1));
}

void check_new_region_rules(void** state) {
  const MemoryTable& m = T(state).table;
  auto code = [&](const wire::MemRegion& r) { return thrown_code([&] { m.check_new_region(r); }); };
  const uint64_t kFreeUva = 0x7f0000400000;
  // Fits in the hole, touching B and C exactly: fine.
  assert_int_equal(code(mr(kGpaB + kSizeAB, kGpaC - (kGpaB + kSizeAB), kFreeUva, 0)), 0);
  assert_int_equal(code(mr(0, kGpaA, kFreeUva, 0)), 0);
  // GPA overlaps: last byte, first byte, containing, contained.
  assert_int_equal(code(mr(kGpaA - 0x1000, 0x1001, kFreeUva, 0)), -EINVAL);
  assert_int_equal(code(mr(kGpaC + kSizeC - 1, 0x1000, kFreeUva, 0)), -EINVAL);
  assert_int_equal(code(mr(0, 0x100000, kFreeUva, 0)), -EINVAL);
  assert_int_equal(code(mr(kGpaB + 0x100, 0x10, kFreeUva, 0)), -EINVAL);
  // UVA overlaps while the GPA range is free.
  assert_int_equal(code(mr(0x100000, 0x1000, kUvaA + kSizeAB - 1, 0)), -EINVAL);
  assert_int_equal(code(mr(0x100000, 0x1000, kUvaC - 0x800, 0)), -EINVAL);
  assert_int_equal(code(mr(0x100000, 0x1000000, kUvaA - 0x1000, 0)), -EINVAL);
  assert_int_equal(code(mr(0x100000, 0x1000, kUvaC + kSizeC, 0)), 0);
  // Size 0 and overflows.
  assert_int_equal(code(mr(0x100000, 0, kFreeUva, 0)), -EINVAL);
  assert_int_equal(code(mr(UINT64_MAX - 0xff, 0x1000, kFreeUva, 0)), -EINVAL);
  assert_int_equal(code(mr(0x100000, 0x1000, UINT64_MAX - 0xff, 0)), -EINVAL);
  assert_int_equal(code(mr(0x100000, 0x1000, kFreeUva, UINT64_MAX - 0xff)), -EINVAL);
  assert_int_equal(code(mr(0x100000, UINT64_MAX, kFreeUva, 0)), -EINVAL);
  // The very top of both address spaces is usable.
  assert_int_equal(code(mr(UINT64_MAX - 0xfff, 0x1000, UINT64_MAX - 0xfff, 0)), 0);
}

void read_write_across_regions(void** state) {
  const MemoryTable& m = T(state).table;
  uint8_t buf[0x40];
  assert_true(m.read(kGpaB - 0x20, buf, sizeof buf));
  for (uint64_t i = 0; i < 0x20; i++) assert_int_equal(buf[i], byte_at(0, kSizeAB - 0x20 + i));
  for (uint64_t i = 0; i < 0x20; i++) assert_int_equal(buf[0x20 + i], byte_at(1, kOffB + i));

  uint8_t out[0x40];
  for (size_t i = 0; i < sizeof out; i++) out[i] = static_cast<uint8_t>(0xc0 ^ i);
  assert_true(m.write(kGpaB - 0x20, out, sizeof out));
  // The files hold what was written, each at its own offset.
  uint8_t fa[0x20], fb[0x20];
  assert_int_equal(::pread(T(state).file[0], fa, sizeof fa, kSizeAB - 0x20), 0x20);
  assert_int_equal(::pread(T(state).file[1], fb, sizeof fb, kOffB), 0x20);
  assert_memory_equal(fa, out, 0x20);
  assert_memory_equal(fb, out + 0x20, 0x20);
  uint8_t back[0x40];
  assert_true(m.read(kGpaB - 0x20, back, sizeof back));
  assert_memory_equal(back, out, sizeof out);

  // Unmapped bytes anywhere in the range fail.
  assert_false(m.read(kGpaB + kSizeAB - 0x10, buf, 0x20));
  assert_false(m.read(kGpaA - 1, buf, 2));
  assert_false(m.read(0x30000, buf, 1));
  assert_false(m.write(kGpaC + kSizeC - 1, out, 2));
  assert_false(m.write(0x30000, out, 1));
  assert_false(m.read(UINT64_MAX - 1, buf, 4));
  // Zero bytes are trivially readable.
  assert_true(m.read(kGpaA, buf, 0));
}

// ---- other tables ----

void empty_table_maps_nothing(void**) {
  MemoryTable m;
  std::vector<iovec> iov;
  uint64_t avail = 1;
  uint8_t b;
  assert_int_equal(m.size(), 0);
  assert_null(m.gpa_to_host(0, 1));
  assert_null(m.uva_to_host(0, 1));
  assert_null(m.gpa_span(0, &avail));
  assert_int_equal(avail, 0);
  assert_false(m.map_range(0, 1, iov, 16));
  assert_true(iov.empty());
  assert_false(m.read(0, &b, 1));
  assert_int_equal(thrown_code([&] { m.check_new_region(mr(0, 0x1000, 0x1000, 0)); }), 0);
}

void top_of_address_space(void**) {
  auto top = region_over(0x1000, mr(UINT64_MAX - 0xfff, 0x1000, UINT64_MAX - 0xfff, 0));
  MemoryTable m({top});
  assert_ptr_equal(m.gpa_to_host(UINT64_MAX, 1), top->host() + 0xfff);
  assert_null(m.gpa_to_host(UINT64_MAX, 2));
  assert_ptr_equal(m.uva_to_host(UINT64_MAX, 1), top->host() + 0xfff);
  assert_null(m.uva_to_host(UINT64_MAX, 2));
  std::vector<iovec> iov;
  assert_true(m.map_range(UINT64_MAX - 0xf, 0x10, iov, 4));
  assert_int_equal(iov.size(), 1);
  assert_int_equal(iov[0].iov_len, 0x10);
  assert_false(m.map_range(UINT64_MAX - 0xf, 0x11, iov, 4));
  assert_int_equal(iov.size(), 1);
  const uint8_t v[2] = {0xaa, 0xbb};
  assert_true(m.write(UINT64_MAX - 1, v, 2));
  uint8_t back[2] = {};
  assert_true(m.read(UINT64_MAX - 1, back, 2));
  assert_memory_equal(back, v, 2);
  assert_false(m.write(UINT64_MAX - 1, v, 3));
}

void table_keeps_regions_alive(void**) {
  auto r = region_over(0x1000, mr(0, 0x1000, 0x1000, 0));
  std::weak_ptr<Region> weak = r;
  auto table = std::make_shared<const MemoryTable>(std::vector<std::shared_ptr<Region>>{r});
  r.reset();
  assert_false(weak.expired());
  uint8_t* p = table->gpa_to_host(0xff0, 0x10);
  assert_non_null(p);
  p[0] = 1;  // still mapped
  table.reset();
  assert_true(weak.expired());
}

}  // namespace

int main() {
  // clang-format off
  const CMUnitTest region_tests[] = {
      cmocka_unit_test(region_rejects_bad_geometry),
      cmocka_unit_test(region_accepts_exact_fits),
      cmocka_unit_test(region_maps_from_its_offset),
      cmocka_unit_test(region_writes_reach_the_file),
      cmocka_unit_test(empty_table_maps_nothing),
      cmocka_unit_test(top_of_address_space),
      cmocka_unit_test(table_keeps_regions_alive),
  };
  // clang-format on
  const CMUnitTest table_tests[] = {
      cmocka_unit_test_setup_teardown(table_is_sorted_by_gpa, setup_tables, teardown_tables),
      cmocka_unit_test_setup_teardown(gpa_to_host_edges, setup_tables, teardown_tables),
      cmocka_unit_test_setup_teardown(gpa_span_reports_contiguous_bytes, setup_tables,
                                      teardown_tables),
      cmocka_unit_test_setup_teardown(map_range_splits_across_regions, setup_tables,
                                      teardown_tables),
      cmocka_unit_test_setup_teardown(map_range_failures_leave_output_unchanged, setup_tables,
                                      teardown_tables),
      cmocka_unit_test_setup_teardown(uva_to_host_edges, setup_tables, teardown_tables),
      cmocka_unit_test_setup_teardown(check_new_region_rules, setup_tables, teardown_tables),
      cmocka_unit_test_setup_teardown(read_write_across_regions, setup_tables, teardown_tables),
  };
  int failed = cmocka_run_group_tests_name("memory_region", region_tests, nullptr, nullptr);
  failed += cmocka_run_group_tests_name("memory_table", table_tests, nullptr, nullptr);
  return failed;
}
