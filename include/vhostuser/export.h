/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file export.h
 * @brief Symbol visibility for the public API.
 *
 * Included by vhostuser.h; applications never need to include it
 * themselves.
 */
#ifndef VHOSTUSER_EXPORT_H
#define VHOSTUSER_EXPORT_H

#if defined(VHU_BUILDING_LIBRARY)
#define VHU_EXPORT __attribute__((visibility("default")))
#else
/**
 * @brief Marks a function as part of the exported C ABI.
 *
 * While the library itself is compiled (VHU_BUILDING_LIBRARY defined) it
 * gives the symbol default visibility; everything else in the library is
 * hidden. For applications it expands to nothing.
 */
#define VHU_EXPORT
#endif

#endif /* VHOSTUSER_EXPORT_H */
