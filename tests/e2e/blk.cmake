# QEMU guests use a vhost-user-blk-pci disk served by vhu-blk: read, O_DIRECT
# write, ext2, discard, resize on SIGHUP, a read-only daemon. Needs
# qemu-system-x86, busybox-static and cpio.
add_test(NAME e2e_qemu_blk
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/blk_guest_test.sh $<TARGET_FILE:vhu-blk>)
# The same with O_DIRECT; the 4096-byte alignment with 512-byte guest blocks
# sends partial-block requests through the bounce buffer (read-modify-write).
add_test(NAME e2e_qemu_blk_direct
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/blk_guest_test.sh $<TARGET_FILE:vhu-blk>
          --direct --direct-align=4096 --block-size=512)
set_tests_properties(e2e_qemu_blk e2e_qemu_blk_direct PROPERTIES TIMEOUT 600)
set_tests_properties(e2e_qemu_blk_direct PROPERTIES ENVIRONMENT BLK_E2E_EXPECT_BOUNCE=1)
