/* libaev - the asyncio event loop in C. Include this header for the whole API.
 * Plugin authors include <aev/plugin.h> instead. */
#ifndef AEV_AEV_H
#define AEV_AEV_H

#include "version.h"
#include "error.h"
#include "log.h"
#include "loop.h"
#include "handle.h"
#include "future.h"
#include "context.h"
#include "policy.h"
#include "task.h"
#include "sock.h"
#include "transport.h"
#include "signals.h"
#include "executor.h"
#include "dns.h"

#endif /* AEV_AEV_H */
