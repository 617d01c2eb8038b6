/* libaev core - the process-wide log sink. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "loop_internal.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static aev_log_fn log_fn;
static void *log_userdata;
static int log_min_level = AEV_LOG_WARNING;

void aev_log_set_handler(aev_log_fn fn, void *userdata, int min_level)
{
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_userdata = userdata;
    log_min_level = min_level;
    pthread_mutex_unlock(&log_lock);
}

static const char *level_name(int level)
{
    if (level >= AEV_LOG_ERROR)
        return "error";
    if (level >= AEV_LOG_WARNING)
        return "warning";
    if (level >= AEV_LOG_INFO)
        return "info";
    return "debug";
}

void aev__vlog(int level, const char *origin, const char *fmt, va_list ap)
{
    char msg[2048];
    pthread_mutex_lock(&log_lock);
    aev_log_fn fn = log_fn;
    void *ud = log_userdata;
    int min = log_min_level;
    pthread_mutex_unlock(&log_lock);
    if (level < min)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (fn)
        fn(level, origin ? origin : "aev", msg, ud);
    else
        fprintf(stderr, "%s: %s: %s\n", origin ? origin : "aev", level_name(level), msg);
}

void aev_log(int level, const char *origin, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    aev__vlog(level, origin, fmt, ap);
    va_end(ap);
}
