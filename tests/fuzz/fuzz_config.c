/* fuzz_config - libFuzzer harness for the config reader and policy resolution:
 * every input is written to a file and resolved as the main config file; the
 * reader must return a result or AEV_ECONFIG, never crash, leak or overrun.
 * Build: meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined
 *        -Db_lundef=false (with CC=clang), then
 *        mkdir -p /tmp/corpus && cp -r tests/fuzz/corpus/. /tmp/corpus &&
 *        build-fuzz/tests/fuzz/fuzz_config -max_total_time=60 /tmp/corpus
 * (libFuzzer adds what it finds to the first corpus directory: keep it out of the tree). */
#include <aev/aev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/aev-fuzz-config-%d.conf", (int)getpid());
        setenv("AEV_CONFIG_DIR", "/nonexistent", 1);
        setenv("XDG_CONFIG_HOME", "/nonexistent", 1);
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    aev_loop_options_t o = {.config_file = path};
    aev_policy_t *p = NULL;
    if (aev_policy_resolve(&o, &p) == 0) {
        for (int i = 0; i < aev_policy_count(p); i++)
            (void)aev_policy_at(p, i)->value;
        (void)aev_policy_plugin_option(p, "poll", "epoll", "x");
        aev_policy_free(p);
    }
    return 0;
}
