/* libaev core - version. */
#include "loop_internal.h"

const char *aev_version(void)
{
    return AEV_VERSION_STRING;
}
