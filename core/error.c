/* libaev core - error codes: messages, names and the thread-local detail. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loop_internal.h"

#define AEV__DETAIL_SIZE 4096
static _Thread_local char detail_buf[AEV__DETAIL_SIZE];

const char *aev_strerror(int err)
{
    switch (err) {
#define AEV__ERROR_MSG(name, value, msg) \
    case value:                          \
        return msg;
        AEV_ERROR_MAP(AEV__ERROR_MSG)
#undef AEV__ERROR_MSG
    default:
        break;
    }
    if (err < 0 && err > -4000)
        return strerror(-err);
    return "unknown error";
}

const char *aev_err_name(int err)
{
    switch (err) {
#define AEV__ERROR_NAME(name, value, msg) \
    case value:                           \
        return "AEV_E" #name;
        AEV_ERROR_MAP(AEV__ERROR_NAME)
#undef AEV__ERROR_NAME
    default:
        break;
    }
    if (err < 0 && err > -4000) {
        const char *name = strerrorname_np(-err);
        if (name)
            return name;
    }
    return "UNKNOWN";
}

const char *aev_error_detail(void)
{
    return detail_buf;
}

void aev__vset_detail(const char *fmt, va_list ap)
{
    vsnprintf(detail_buf, sizeof detail_buf, fmt, ap);
}

void aev__set_detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    aev__vset_detail(fmt, ap);
    va_end(ap);
}

void aev__clear_detail(void)
{
    detail_buf[0] = '\0';
}
