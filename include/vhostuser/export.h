/* SPDX-License-Identifier: Apache-2.0 */
/* Symbol visibility for the public API. */
#ifndef VHOSTUSER_EXPORT_H
#define VHOSTUSER_EXPORT_H

#if defined(VHU_BUILDING_LIBRARY)
#define VHU_EXPORT __attribute__((visibility("default")))
#else
#define VHU_EXPORT
#endif

#endif /* VHOSTUSER_EXPORT_H */
