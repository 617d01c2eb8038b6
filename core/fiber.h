/* libaev core - fibers: separate stacks with a guard page and a hand-written
 * context switch (x86-64, aarch64; ucontext elsewhere or with
 * -Dfiber=ucontext). Tasks run on fibers; the loop runs on the thread's own
 * stack. A fiber only ever switches to the loop's stack and back, so the
 * switch saves just the callee-saved registers of the C ABI.
 *
 * Sanitizers: the switch tells AddressSanitizer (start/finish_switch_fiber) and
 * ThreadSanitizer (fiber objects) about the stacks, and valgrind learns each
 * stack through VALGRIND_STACK_REGISTER when its header is available. */
#ifndef AEV_FIBER_H
#define AEV_FIBER_H

#include <stddef.h>
#include <stdint.h>

#if !defined(AEV_FIBER_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define AEV_FIBER_UCONTEXT 1
#endif
#ifdef AEV_FIBER_UCONTEXT
#include <ucontext.h>
#elif defined(__x86_64__)
#define AEV__FIBER_JUMP 1 /* the switch is inline code ending in an indirect jump */
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AEV__ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define AEV__TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(AEV__ASAN)
#define AEV__ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(AEV__TSAN)
#define AEV__TSAN 1
#endif

/* A stack: one mapping, lowest page PROT_NONE (the guard). */
typedef struct aev__stack {
    void *map;      /* the mapping, guard page first */
    size_t map_len; /* guard + usable */
    struct aev__stack *next_free; /* in the cache */
    unsigned valgrind_id;
} aev__stack_t;

/* A fiber: where its stack pointer was saved, and its stack. */
typedef struct aev__fiber {
#ifdef AEV_FIBER_UCONTEXT
    ucontext_t uc;
#elif defined(AEV__FIBER_JUMP)
    void *ctx[3]; /* stack pointer, where to resume, frame pointer */
#else
    void *sp;
#endif
    aev__stack_t *stack;
#ifdef AEV__ASAN
    void *asan_fake; /* ASan's fake stack of this fiber while it is switched out */
#endif
#ifdef AEV__TSAN
    void *tsan;
#endif
} aev__fiber_t;

/* The loop side of the switch: the thread's own stack. */
typedef struct aev__fiber_home {
#ifdef AEV_FIBER_UCONTEXT
    ucontext_t uc;
#elif defined(AEV__FIBER_JUMP)
    void *ctx[3];
#else
    void *sp;
#endif
#ifdef AEV__ASAN
    void *asan_fake;
    const void *stack_bottom;
    size_t stack_size;
#endif
#ifdef AEV__TSAN
    void *tsan;
#endif
} aev__fiber_home_t;

/* A cache of stacks of one size, so that spawning a task costs no syscall. */
typedef struct aev__stack_cache {
    aev__stack_t *free;
    size_t len, max;
    size_t usable; /* the default usable size of cached stacks */
} aev__stack_cache_t;

/* The usable stack size for a request (0: the default), rounded up to pages. */
size_t aev__stack_size(size_t requested);
/* A stack of at least usable bytes (from the cache when it is the cache's size). */
int aev__stack_get(aev__stack_cache_t *cache, size_t usable, aev__stack_t **out);
/* Returns a stack to the cache, or unmaps it. */
void aev__stack_put(aev__stack_cache_t *cache, aev__stack_t *s);
void aev__stack_cache_clear(aev__stack_cache_t *cache);

/* Prepares fiber to run entry(arg) on stack the first time it is switched to.
 * entry must never return: its last act is aev__fiber_exit(). */
void aev__fiber_init(aev__fiber_t *fiber, aev__stack_t *stack, void (*entry)(void *), void *arg);
#if defined(AEV__FIBER_JUMP)
/* Saves where this side stands (stack pointer, resume address, frame pointer) in save
 * and jumps to the place saved in to. Every other register is declared clobbered, so
 * the compiler keeps nothing in registers across the switch but what it saves itself,
 * in its own frame. Inline code ending in an indirect jump: no call/return pair for
 * the return-address predictor to get wrong. */
static inline __attribute__((always_inline)) void aev__fiber_jump(void **save, void **to)
{
    __asm__ volatile("leaq 1f(%%rip), %%rax\n\t"
                     "movq %%rsp, 0(%0)\n\t"
                     "movq %%rax, 8(%0)\n\t"
                     "movq %%rbp, 16(%0)\n\t"
                     "movq 16(%1), %%rbp\n\t"
                     "movq 0(%1), %%rsp\n\t"
                     "jmpq *8(%1)\n\t"
                     "1:\n\t"
                     : "+D"(save), "+S"(to)
                     :
                     : "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
                       "r15", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
                       "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
                       "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)");
}
#define AEV__FIBER_SWITCH(from, to) aev__fiber_jump((from)->ctx, (to)->ctx)
#elif !defined(AEV_FIBER_UCONTEXT)
/* Pushes the callee-saved registers, stores the stack pointer in *save, loads to and
 * pops the registers saved there. */
void aev__fiber_swap(void **save, void *to) __attribute__((visibility("hidden")));
#define AEV__FIBER_SWITCH(from, to) aev__fiber_swap(&(from)->sp, (to)->sp)
#else
#define AEV__FIBER_SWITCH(from, to) swapcontext(&(from)->uc, &(to)->uc)
#endif

void aev__fiber_enter_slow(aev__fiber_home_t *home, aev__fiber_t *fiber);
void aev__fiber_leave_slow(aev__fiber_home_t *home, aev__fiber_t *fiber);

#if defined(AEV__ASAN) || defined(AEV__TSAN)
#define AEV__FIBER_ANNOTATED 1 /* the sanitizers must hear of every switch */
#endif

/* From the loop: runs fiber until it switches back. Inline: every function level
 * between the switch and the code that waits costs a mispredicted return per switch. */
static inline __attribute__((always_inline)) void aev__fiber_enter(aev__fiber_home_t *home,
                                                                  aev__fiber_t *fiber)
{
#ifdef AEV__FIBER_ANNOTATED
    aev__fiber_enter_slow(home, fiber);
#else
    AEV__FIBER_SWITCH(home, fiber);
#endif
}

/* From inside fiber: back to the loop; returns when the loop enters the fiber again. */
static inline __attribute__((always_inline)) void aev__fiber_leave(aev__fiber_home_t *home,
                                                                  aev__fiber_t *fiber)
{
#ifdef AEV__FIBER_ANNOTATED
    aev__fiber_leave_slow(home, fiber);
#else
    AEV__FIBER_SWITCH(fiber, home);
#endif
}

/* From inside fiber, for the last time: back to the loop, never to return. */
__attribute__((noreturn)) void aev__fiber_exit(aev__fiber_home_t *home, aev__fiber_t *fiber);
/* Called first thing by a fiber's entry function (sanitizer bookkeeping). */
void aev__fiber_started(aev__fiber_home_t *home, aev__fiber_t *fiber);
/* Releases a fiber's sanitizer state after it exited (its stack is the caller's). */
void aev__fiber_destroy(aev__fiber_t *fiber);

#endif /* AEV_FIBER_H */
