# A QEMU guest reads /dev/hwrng through vhu-rng, twice against one daemon
# process. Needs qemu-system-x86, busybox-static and cpio.
add_test(NAME e2e_qemu_rng
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/rng_guest_test.sh $<TARGET_FILE:vhu-rng>)
set_tests_properties(e2e_qemu_rng PROPERTIES TIMEOUT 900)
