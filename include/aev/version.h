/* libaev - version. */
#ifndef AEV_VERSION_H
#define AEV_VERSION_H

#define AEV_VERSION_MAJOR 0
#define AEV_VERSION_MINOR 1
#define AEV_VERSION_PATCH 0
#define AEV_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif
/** Returns the version of the library at run time, e.g. "0.1.0". */
const char *aev_version(void);
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* AEV_VERSION_H */
