# vhu-net against DPDK testpmd's net_virtio_user front-end: exact packet
# counts into --sink, --loopback with one and two queue pairs, packets that
# span several receive buffers (MRG_RXBUF). Needs dpdk (dpdk-testpmd), root.
add_test(NAME e2e_dpdk_net
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/net_dpdk_test.sh $<TARGET_FILE:vhu-net>)
# A QEMU guest (virtio-net-pci on -netdev vhost-user) and a tap device that
# vhu-net serves inside a network namespace of its own ping each other.
# Needs qemu-system-x86, busybox-static, cpio, iproute2, iputils-ping, root.
add_test(NAME e2e_qemu_net_tap
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/net_tap_test.sh $<TARGET_FILE:vhu-net>)
set_tests_properties(e2e_dpdk_net PROPERTIES TIMEOUT 600 RUN_SERIAL TRUE)
set_tests_properties(e2e_qemu_net_tap PROPERTIES TIMEOUT 600)
