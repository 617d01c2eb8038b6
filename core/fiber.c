/* libaev core - fibers: stacks with a guard page, a cache of them, and the
 * context switch (see fiber.h).
 *
 * The switch is a few instructions, no system call. On x86-64 it is inline
 * code that saves the stack pointer and a resume address and jumps to the
 * other side's (aev__fiber_jump in fiber.h); on aarch64 a function pushes the
 * callee-saved registers and returns on the other stack (aev__fiber_swap). A
 * new fiber is prepared so that the first switch lands in aev__fiber_start,
 * which calls entry(arg). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fiber.h"

#ifdef AEV__ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef AEV__TSAN
#include <sanitizer/tsan_interface.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define AEV__HAVE_VALGRIND 1
#endif
#endif

#ifdef AEV__ASAN
#define AEV__DEFAULT_STACK (256u * 1024u) /* ASan's redzones make frames several times larger */
#else
#define AEV__DEFAULT_STACK (64u * 1024u)
#endif

/* ---- the switch ------------------------------------------------------------- */

#ifndef AEV_FIBER_UCONTEXT
void aev__fiber_start(void) __attribute__((visibility("hidden")));

#if defined(__x86_64__)
/* A new fiber starts here, by the jump of aev__fiber_jump, with its stack pointer on
 * (entry, arg). The call leaves the stack 16-byte aligned as the ABI wants. */
__asm__(".text\n"
        ".p2align 4\n"
        ".globl aev__fiber_start\n"
        ".hidden aev__fiber_start\n"
        ".type aev__fiber_start,@function\n"
        "aev__fiber_start:\n"
        "    popq %rax\n"
        "    popq %rdi\n"
        "    callq *%rax\n"
        "    ud2\n"
        ".size aev__fiber_start, .-aev__fiber_start\n");

static void fiber_prepare(aev__fiber_t *fiber, void *top, void (*entry)(void *), void *arg)
{
    uintptr_t sp = ((uintptr_t)top & ~(uintptr_t)15) - 32;
    void **slots = (void **)sp;
    slots[0] = (void *)(uintptr_t)entry;
    slots[1] = arg; /* after the two pops the stack pointer is top - 16: aligned */
    fiber->ctx[0] = (void *)sp;
    fiber->ctx[1] = (void *)(uintptr_t)aev__fiber_start;
    fiber->ctx[2] = NULL;
}
#elif defined(__aarch64__)
/* AAPCS64: x19-x28, x29 (frame), x30 (link), d8-d15. */
__asm__(".text\n"
        ".p2align 4\n"
        ".globl aev__fiber_swap\n"
        ".hidden aev__fiber_swap\n"
        ".type aev__fiber_swap,%function\n"
        "aev__fiber_swap:\n"
        "    sub sp, sp, #160\n"
        "    stp x19, x20, [sp, #0]\n"
        "    stp x21, x22, [sp, #16]\n"
        "    stp x23, x24, [sp, #32]\n"
        "    stp x25, x26, [sp, #48]\n"
        "    stp x27, x28, [sp, #64]\n"
        "    stp x29, x30, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    mov x2, sp\n"
        "    str x2, [x0]\n"
        "    mov sp, x1\n"
        "    ldp x19, x20, [sp, #0]\n"
        "    ldp x21, x22, [sp, #16]\n"
        "    ldp x23, x24, [sp, #32]\n"
        "    ldp x25, x26, [sp, #48]\n"
        "    ldp x27, x28, [sp, #64]\n"
        "    ldp x29, x30, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    add sp, sp, #160\n"
        "    ret\n"
        ".size aev__fiber_swap, .-aev__fiber_swap\n"
        ".p2align 4\n"
        ".globl aev__fiber_start\n"
        ".hidden aev__fiber_start\n"
        ".type aev__fiber_start,%function\n"
        "aev__fiber_start:\n"
        "    mov x0, x20\n"
        "    blr x19\n"
        "    brk #0\n"
        ".size aev__fiber_start, .-aev__fiber_start\n");

typedef struct {
    uint64_t x[12]; /* x19..x30 */
    uint64_t d[8];  /* d8..d15 */
} swap_frame_t;

static void fiber_prepare(aev__fiber_t *fiber, void *top, void (*entry)(void *), void *arg)
{
    uintptr_t sp = ((uintptr_t)top & ~(uintptr_t)15) - sizeof(swap_frame_t);
    swap_frame_t *f = (swap_frame_t *)sp;
    memset(f, 0, sizeof *f);
    f->x[0] = (uint64_t)(uintptr_t)entry;             /* x19 */
    f->x[1] = (uint64_t)(uintptr_t)arg;               /* x20 */
    f->x[11] = (uint64_t)(uintptr_t)aev__fiber_start; /* x30: where ret goes */
    fiber->sp = f;
}
#endif
#endif /* !AEV_FIBER_UCONTEXT */

/* ---- stacks ------------------------------------------------------------------ */

/* The page size, asked once (loops in several threads may ask at once: the cache is atomic). */
static size_t page_size(void)
{
    static size_t cached;
    size_t ps = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (!ps) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (size_t)v : 4096;
        __atomic_store_n(&cached, ps, __ATOMIC_RELAXED);
    }
    return ps;
}

size_t aev__stack_size(size_t requested)
{
    size_t ps = page_size();
    size_t n = requested ? requested : AEV__DEFAULT_STACK;
    if (n < 4 * ps)
        n = 4 * ps;
    return (n + ps - 1) / ps * ps;
}

/* The usable range of s: above the guard page, below the aev__stack_t kept at the top. */
static inline void *stack_lo(const aev__stack_t *s)
{
    return (char *)s->map + page_size();
}

static inline __attribute__((unused)) size_t stack_usable(const aev__stack_t *s)
{
    return (size_t)((char *)s - (char *)stack_lo(s));
}

int aev__stack_get(aev__stack_cache_t *cache, size_t usable, aev__stack_t **out)
{
    if (cache->free && usable == cache->usable) {
        aev__stack_t *s = cache->free;
        cache->free = s->next_free;
        cache->len--;
        *out = s;
        return 0;
    }
    size_t ps = page_size();
    size_t len = ps + usable + ps; /* guard, usable, a page for the header at the top */
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                     -1, 0);
    if (map == MAP_FAILED)
        return -errno;
    if (mprotect(map, ps, PROT_NONE) != 0) {
        int e = errno;
        munmap(map, len);
        return -e;
    }
    aev__stack_t *s = (aev__stack_t *)((char *)map + len - sizeof(aev__stack_t));
    s->map = map;
    s->map_len = len;
    s->next_free = NULL;
#ifdef AEV__HAVE_VALGRIND
    s->valgrind_id = VALGRIND_STACK_REGISTER(stack_lo(s), (char *)s);
#else
    s->valgrind_id = 0;
#endif
    *out = s;
    return 0;
}

static void stack_unmap(aev__stack_t *s)
{
#ifdef AEV__HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(s->valgrind_id);
#endif
    munmap(s->map, s->map_len);
}

void aev__stack_put(aev__stack_cache_t *cache, aev__stack_t *s)
{
    size_t usable = s->map_len - 2 * page_size();
    if (usable == cache->usable && cache->len < cache->max) {
        s->next_free = cache->free;
        cache->free = s;
        cache->len++;
        return;
    }
    stack_unmap(s);
}

void aev__stack_cache_clear(aev__stack_cache_t *cache)
{
    while (cache->free) {
        aev__stack_t *s = cache->free;
        cache->free = s->next_free;
        stack_unmap(s);
    }
    cache->len = 0;
}

/* ---- fibers ------------------------------------------------------------------- */

#ifdef AEV_FIBER_UCONTEXT
static void uc_entry(unsigned hi_e, unsigned lo_e, unsigned hi_a, unsigned lo_a)
{
    void (*entry)(void *) = (void (*)(void *))(((uintptr_t)hi_e << 32) | lo_e);
    void *arg = (void *)(((uintptr_t)hi_a << 32) | lo_a);
    entry(arg);
    abort(); /* entry never returns */
}
#endif

void aev__fiber_init(aev__fiber_t *fiber, aev__stack_t *stack, void (*entry)(void *), void *arg)
{
    fiber->stack = stack;
#ifdef AEV_FIBER_UCONTEXT
    getcontext(&fiber->uc);
    fiber->uc.uc_stack.ss_sp = stack_lo(stack);
    fiber->uc.uc_stack.ss_size = stack_usable(stack);
    fiber->uc.uc_link = NULL;
    uintptr_t e = (uintptr_t)entry, a = (uintptr_t)arg;
    makecontext(&fiber->uc, (void (*)(void))uc_entry, 4, (unsigned)(e >> 32), (unsigned)e, (unsigned)(a >> 32),
                (unsigned)a);
#else
    fiber_prepare(fiber, (char *)stack, entry, arg);
#endif
#ifdef AEV__ASAN
    fiber->asan_fake = NULL;
#endif
#ifdef AEV__TSAN
    fiber->tsan = __tsan_create_fiber(0);
#endif
}

void aev__fiber_destroy(aev__fiber_t *fiber)
{
#ifdef AEV__TSAN
    if (fiber->tsan)
        __tsan_destroy_fiber(fiber->tsan);
    fiber->tsan = NULL;
#else
    (void)fiber;
#endif
}

void aev__fiber_enter_slow(aev__fiber_home_t *home, aev__fiber_t *fiber)
{
#ifdef AEV__ASAN
    __sanitizer_start_switch_fiber(&home->asan_fake, stack_lo(fiber->stack), stack_usable(fiber->stack));
#endif
#ifdef AEV__TSAN
    home->tsan = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(fiber->tsan, 0);
#endif
    AEV__FIBER_SWITCH(home, fiber);
#ifdef AEV__ASAN
    __sanitizer_finish_switch_fiber(home->asan_fake, NULL, NULL);
#endif
}

void aev__fiber_started(aev__fiber_home_t *home, aev__fiber_t *fiber)
{
    (void)home;
    (void)fiber;
#ifdef AEV__ASAN
    __sanitizer_finish_switch_fiber(NULL, &home->stack_bottom, &home->stack_size);
#endif
}

void aev__fiber_leave_slow(aev__fiber_home_t *home, aev__fiber_t *fiber)
{
#ifdef AEV__ASAN
    __sanitizer_start_switch_fiber(&fiber->asan_fake, home->stack_bottom, home->stack_size);
#endif
#ifdef AEV__TSAN
    __tsan_switch_to_fiber(home->tsan, 0);
#endif
    AEV__FIBER_SWITCH(fiber, home);
#ifdef AEV__ASAN
    __sanitizer_finish_switch_fiber(fiber->asan_fake, &home->stack_bottom, &home->stack_size);
#endif
}

void aev__fiber_exit(aev__fiber_home_t *home, aev__fiber_t *fiber)
{
#ifdef AEV__ASAN
    /* NULL: this fiber's fake stack can go, it never runs again */
    __sanitizer_start_switch_fiber(NULL, home->stack_bottom, home->stack_size);
#endif
#ifdef AEV__TSAN
    __tsan_switch_to_fiber(home->tsan, 0);
#endif
    AEV__FIBER_SWITCH(fiber, home);
    abort(); /* never entered again */
}
