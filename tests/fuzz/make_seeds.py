#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the hand-made seed inputs of the fuzz targets.

    python3 tests/fuzz/make_seeds.py [OUTDIR]   (default: tests/fuzz/seeds)

The encodings follow the input layouts documented at the top of
fuzz_split_ring.cc and fuzz_session.cc. Output is deterministic.
"""
import os
import struct
import sys

# ---- fuzz_split_ring -------------------------------------------------------

NEXT, WRITE, INDIRECT = 1, 2, 4
OPT_EVENT_IDX, OPT_INDIRECT, OPT_FRESH, OPT_LAYOUT = 1, 2, 4, 8


def desc(flags, gpa=None, length=0, nxt=0, boundary=None, raw_addr=None, len_mode=0):
    """One descriptor record: u8 f, u16 a, u16 l, u8 n (+ u64 in mode 3).

    gpa: an even address inside guest memory (mode 0); boundary: an offset
    around gpa 0x10000 (mode 1); raw_addr: any u64 (mode 3). For an indirect
    descriptor in length mode 0, `length` is the table size in bytes.
    """
    extra = b""
    if gpa is not None:
        mode, a = 0, gpa >> 1
    elif boundary is not None:
        mode, a = 1, boundary
    else:
        mode, a = 3, 0
        extra = struct.pack("<Q", raw_addr)
    if flags & INDIRECT and len_mode == 0:
        l = length // 16
    else:
        l = length
    f = flags | (mode << 3) | (len_mode << 5)
    return struct.pack("<BHHB", f, a, l, nxt) + extra


def ring_header(log2num, opt, next_avail=0, pending=1, used_idx=None, avail_flags=0,
                used_event=0, layout=None):
    used_idx = next_avail if used_idx is None else used_idx
    b = struct.pack("<BBHBHBH", log2num, opt, next_avail, pending, used_idx, avail_flags,
                    used_event)
    if layout:
        b += struct.pack("<HHH", *(x >> 1 for x in layout))
    return b


def table(descs):
    return bytes([len(descs)]) + b"".join(descs)


def heads(hs):
    return bytes([len(hs)]) + bytes(hs)


def indirect_tables(tables):
    out = bytes([len(tables)])
    for gpa, descs in tables:
        out += struct.pack("<HB", gpa >> 1, len(descs)) + b"".join(descs)
    return out


# ops (low nibble % 12; bits 4 and 7 select variants): 0-3 pop, 4-5 push (u8 which, u8 written mode [u32]),
# 6 unpop (bit 7: u8 which), 7 need_notify, 8 set_kicks (bit 4 = enable),
# 9 driver: bit 4 -> add u8%4+1 heads, else rewrite u8 desc slot with a record,
# 10 remap (u8 % 3: same, fresh, region 0 only), 11 pending + touch all.
POP = b"\x00"
NOTIFY = b"\x07"
TOUCH = b"\x0b"


def push(which=0, written_mode=0, written=None):
    b = bytes([4, which, written_mode])
    if written_mode == 3:
        b += struct.pack("<I", written)
    return b


def unpop():
    return b"\x06"


def kicks(enable):
    return bytes([8 | (0x10 if enable else 0)])


def driver_add(hs):
    return bytes([9 | 0x10, len(hs) - 1]) + bytes(hs)


def driver_desc(slot, record):
    return bytes([9, slot]) + record


def remap(kind):
    return bytes([10, kind])


def split_ring_seeds():
    s = {}
    # A readable + writable chain, popped, pushed, notified.
    s["simple_chain"] = (
        ring_header(3, 0)
        + table([desc(NEXT, 0x8000, 0x100, 1), desc(WRITE, 0x9000, 0x200, 0)])
        + heads([0]) + indirect_tables([])
        + POP + push() + NOTIFY + POP)
    # One indirect descriptor pointing at a three-entry table.
    s["indirect_chain"] = (
        ring_header(3, OPT_INDIRECT | OPT_EVENT_IDX)
        + table([desc(INDIRECT, 0x6000, 48)])
        + heads([0])
        + indirect_tables([(0x6000, [desc(NEXT, 0x8000, 16, 1),
                                     desc(NEXT | WRITE, 0x9000, 64, 2),
                                     desc(WRITE, 0xA000, 100, 0)])])
        + POP + push(0, 2) + NOTIFY + kicks(False) + kicks(True) + POP)
    # Buffers that cross the region boundary; several chains outstanding,
    # unpop, a remap to a fresh table while chains are held, then touch them.
    s["boundary_remap"] = (
        ring_header(8, OPT_EVENT_IDX, next_avail=0xfffe, pending=3)
        + table([desc(NEXT, None, 0x200, 1, boundary=0x700),
                 desc(WRITE, None, 0x1000, 0, boundary=0x7f0),
                 desc(WRITE, 0x1F000, 0x1000, 0)])
        + heads([0, 2, 1]) + indirect_tables([])
        + POP + POP + unpop() + POP + remap(1) + TOUCH + POP + push(1, 0) + push(0, 1)
        + remap(2) + TOUCH + NOTIFY + POP)
    # Rings in region 1 (offset mapping), attached through a fresh table;
    # the driver adds more heads while the device works.
    s["rings_in_region1"] = (
        ring_header(4, OPT_FRESH | OPT_LAYOUT | OPT_EVENT_IDX, pending=1,
                    layout=(0x10000, 0x11000, 0x12000))
        + table([desc(WRITE, 0x14000, 0x800, 0), desc(0, 0x4000, 0x10, 0)])
        + heads([1]) + indirect_tables([])
        + POP + push(0, 3, 0x10) + driver_add([0, 1]) + POP + POP
        + driver_desc(0, desc(NEXT, 0x8000, 0x10, 1)) + driver_add([0]) + POP
        + push(0) + push(0) + push(0) + NOTIFY)
    # Broken rings: a loop, an out-of-range next, an unmapped buffer.
    s["loop"] = (
        ring_header(2, 0)
        + table([desc(NEXT, 0x8000, 8, 1), desc(NEXT, 0x8100, 8, 0)])
        + heads([0]) + indirect_tables([]) + POP)
    s["unmapped"] = (
        ring_header(1, 0)
        + table([desc(0, None, 0x10, 0, raw_addr=0x7FFF00000000)])
        + heads([0]) + indirect_tables([]) + POP)
    return s


# ---- fuzz_session ---------------------------------------------------------

GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
SET_BACKEND_REQ_FD, GET_CONFIG, SET_CONFIG, RESET_DEVICE = 21, 24, 25, 34
GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG, SET_STATUS, GET_STATUS = 36, 37, 38, 39, 40

O_ONE_WORKER, O_REPLY_ACK, O_EVENT_IDX, O_INDIRECT, O_NO_PROTOCOL, O_NOFD_KICK = (
    1, 8, 16, 32, 64, 128)

FD_GUEST, FD_EVENT, FD_SOCKET = 0, 1, 3


def fd_memfd(size_index):
    return 2 | (size_index << 2)


def options(level, flags=0):
    return bytes([flags | (level << 1)])


def msg(request, payload=b"", need_reply=False, fds=(), structured=None, raw_flags=None,
        size=None):
    """A message record. structured: (length selector bits, selector bytes)."""
    fs = (1 if need_reply else 0) | (len(fds) << 2)
    if raw_flags is not None:
        fs |= 0x10
    if size is not None:
        fs |= 0x40
    b = bytes([0, request, fs])
    if raw_flags is not None:
        b += struct.pack("<I", raw_flags)
    if structured is not None:
        ls, sel = structured
        b += struct.pack("<H", 0x8000 | ls) + sel
    else:
        b += struct.pack("<H", len(payload)) + payload
    if size is not None:
        b += struct.pack("<H", size)
    return b + bytes(fds)


def region(gpa64k=0, size_sel=0, uva64k=0, off4k=0):
    return bytes([gpa64k, size_sel, uva64k, off4k])


def post_chain(q, descs, kick=True):
    """descs: (offset, length, write) triples (1..4)."""
    qs = q | (2 if kick else 0) | ((len(descs) - 1) << 2)
    b = bytes([6, qs])
    for off, length, write in descs:
        b += struct.pack("<HHB", off, length, 1 if write else 0)
    return b


def guest_write(off, data):
    return bytes([5]) + struct.pack("<HB", off, len(data)) + data


def kick(q):
    return bytes([7 | (q << 4)])


WAIT = bytes([7 | 8])


def session_seeds():
    s = {}
    s["handshake"] = (
        options(1) + bytes([3])
        + msg(GET_QUEUE_NUM) + msg(GET_MAX_MEM_SLOTS)
        + msg(GET_CONFIG, structured=(0, bytes([4, 8]) + bytes(8))) + msg(GET_STATUS)
        + msg(SET_STATUS, structured=(0x0f, b"")) + msg(GET_STATUS))
    # Queue 0 up (eventfd kick), a chain posted and kicked, then stopped.
    s["ring0_chain"] = (
        options(2, O_ONE_WORKER | O_EVENT_IDX | O_INDIRECT) + bytes([3])
        + post_chain(0, [(0x9000, 0x100, False), (0xA000, 0x200, True)]) + WAIT
        + post_chain(0, [(0x9100, 0x10, False)]) + WAIT
        + msg(GET_VRING_BASE, structured=(0, bytes([0]))) + WAIT)
    # Both queues, polled (NOFD) kicks, REPLY_ACK; memory changes while the
    # queues run, then a device reset.
    s["two_queues_reply_ack"] = (
        options(3, O_REPLY_ACK | O_NOFD_KICK) + bytes([4])
        + post_chain(0, [(0x9000, 0x40, True)], kick=False)
        + post_chain(1, [(0xC000, 0x40, False), (0xD000, 0x40, True)], kick=False) + WAIT
        + msg(ADD_MEM_REG, need_reply=True, fds=[FD_GUEST],
              structured=(0, region(gpa64k=2, uva64k=2)))
        + msg(REM_MEM_REG, need_reply=True, structured=(0, region(gpa64k=2, uva64k=2)))
        + msg(SET_VRING_ENABLE, need_reply=True, structured=(0, bytes([1])))
        + msg(RESET_DEVICE, need_reply=True) + WAIT)
    # No prefix: the whole setup as fuzzable records, legacy (no protocol
    # features), single-threaded daemon.
    s["manual_setup"] = (
        options(0)
        + msg(GET_FEATURES) + msg(SET_OWNER)
        + msg(SET_FEATURES, structured=(0x2, b""))
        + msg(SET_MEM_TABLE, fds=[FD_GUEST], structured=(0, region()))
        + msg(SET_VRING_NUM, structured=(3, bytes([0])))
        + msg(SET_VRING_ADDR, structured=(0, bytes([0, 0, 0, 0])))
        + msg(SET_VRING_BASE, structured=(0, bytes([0])))
        + msg(SET_VRING_CALL, fds=[FD_EVENT], structured=(0, bytes([0])))
        + msg(SET_VRING_KICK, fds=[FD_EVENT], structured=(0, bytes([0])))
        + post_chain(0, [(0x9000, 0x20, False), (0x9800, 0x20, True)]) + WAIT
        + msg(GET_VRING_BASE, structured=(0, bytes([0]))) + WAIT)
    # Memory tables over fresh memfds of several sizes, a backend channel,
    # config writes, RESET_OWNER.
    s["mem_and_config"] = (
        options(1, O_ONE_WORKER) + bytes([0])
        + msg(SET_MEM_TABLE, fds=[FD_GUEST, fd_memfd(4), fd_memfd(6)],
              structured=(0, region(0, 0, 0, 0) + region(1, 0, 1, 0) + region(4, 3, 4, 0)))
        + msg(SET_BACKEND_REQ_FD, fds=[FD_SOCKET])
        + msg(SET_CONFIG, need_reply=True, structured=(0, bytes([0, 4]) + b"\x01\x02\x03\x04"))
        + msg(RESET_OWNER) + msg(GET_FEATURES))
    # Framing errors: an oversized header, after a message with an fd the
    # request does not take.
    s["framing"] = (
        options(1) + bytes([3])
        + msg(GET_FEATURES, fds=[FD_EVENT])
        + msg(SET_OWNER, payload=b"\x00" * 8)
        + bytes([0, GET_FEATURES, 0]) + struct.pack("<H", 0x1400))
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "seeds")
    for target, seeds in (("fuzz_split_ring", split_ring_seeds()),
                          ("fuzz_session", session_seeds())):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in sorted(seeds.items()):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            print(f"{target}/{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
