/* libaev core - config file internals (config.c reads, policy.c interprets). */
#ifndef AEV_CONFIG_INTERNAL_H
#define AEV_CONFIG_INTERNAL_H

#include <stddef.h>

typedef struct aev__config_entry {
    char *section;
    char *key;
    char *value;
    const char *file; /* owned by the config's file list */
    int line;
} aev__config_entry_t;

typedef struct aev__config {
    aev__config_entry_t *entries;
    size_t len, cap;
    char **files; /* every file read, in order */
    size_t nfiles, capfiles;
} aev__config_t;

/* Reads path (missing is fine unless must_exist); AEV_ECONFIG with "FILE:LINE: why". */
int aev__config_read_file(aev__config_t *cfg, const char *path, int must_exist);
/* Reads the files named *.conf in dir, in name order. */
int aev__config_read_dropins(aev__config_t *cfg, const char *dir);
/* The last entry for section/key, or NULL. */
const aev__config_entry_t *aev__config_find(const aev__config_t *cfg, const char *section,
                                            const char *key);
void aev__config_free(aev__config_t *cfg);

/* Validation hooks, defined by policy.c. */
int aev__config_check_section(const char *file, int line, const char *section);
int aev__config_check_entry(const char *file, int line, const char *section, const char *key,
                            const char *value);

#endif /* AEV_CONFIG_INTERNAL_H */
