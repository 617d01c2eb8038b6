/* policy_probe - prints the policy libaev resolves, one "key=value<TAB>origin"
 * line per setting, then "search=<dir>" lines. test_setuid runs it as a
 * set-user-ID program to check that the AEV_* environment is ignored there.
 * Linked with the core's objects, not libaev.so (see tests/registry/meson.build). */
#include <aev/aev.h>
#include <stdio.h>

int main(void)
{
    aev_policy_t *p;
    int rc = aev_policy_resolve(NULL, &p);
    if (rc < 0) {
        fprintf(stderr, "policy_probe: %s: %s\n", aev_strerror(rc), aev_error_detail());
        return 1;
    }
    for (int i = 0; i < aev_policy_count(p); i++) {
        const aev_policy_choice_t *c = aev_policy_at(p, i);
        printf("%s=%s\t%s\n", c->key, c->value, c->origin_text);
    }
    for (int i = 0; aev_policy_search_dir(p, i); i++)
        printf("search=%s\n", aev_policy_search_dir(p, i));
    aev_policy_free(p);
    return 0;
}
