/* libaev core - config files: an INI reader that keeps, for every setting,
 * the file and line it came from, and rejects a bad line with "FILE:LINE: why".
 *
 * Syntax: blank lines; comments starting with '#' or ';'; "[section]";
 * "key = value" (whitespace around key and value is trimmed). Which sections
 * and keys are valid is policy.c's business (aev__config_validate). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "loop_internal.h"

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int add_entry(aev__config_t *cfg, const char *section, const char *key, const char *value,
                     const char *file, int line)
{
    if (cfg->len == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 16;
        aev__config_entry_t *n = realloc(cfg->entries, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        cfg->entries = n;
        cfg->cap = cap;
    }
    aev__config_entry_t *e = &cfg->entries[cfg->len];
    e->section = strdup(section);
    e->key = strdup(key);
    e->value = strdup(value);
    e->file = file;
    e->line = line;
    if (!e->section || !e->key || !e->value) {
        free(e->section);
        free(e->key);
        free(e->value);
        return -ENOMEM;
    }
    cfg->len++;
    return 0;
}

static const char *keep_file_name(aev__config_t *cfg, const char *path)
{
    if (cfg->nfiles == cfg->capfiles) {
        size_t cap = cfg->capfiles ? cfg->capfiles * 2 : 4;
        char **n = realloc(cfg->files, cap * sizeof *n);
        if (!n)
            return NULL;
        cfg->files = n;
        cfg->capfiles = cap;
    }
    char *copy = strdup(path);
    if (copy)
        cfg->files[cfg->nfiles++] = copy;
    return copy;
}

int aev__config_read_file(aev__config_t *cfg, const char *path, int must_exist)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT && !must_exist)
            return 0;
        aev__set_detail("%s: cannot open config file: %s", path, strerror(errno));
        return AEV_ECONFIG;
    }
    const char *file = keep_file_name(cfg, path);
    if (!file) {
        fclose(f);
        return -ENOMEM;
    }
    char buf[4096];
    char section[256] = "";
    int lineno = 0, rc = 0;
    while (fgets(buf, sizeof buf, f)) {
        lineno++;
        size_t blen = strlen(buf);
        if (blen == sizeof buf - 1 && buf[blen - 1] != '\n' && !feof(f)) {
            aev__set_detail("%s:%d: line too long (more than %zu bytes)", path, lineno, sizeof buf - 2);
            rc = AEV_ECONFIG;
            break;
        }
        char *s = trim(buf);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end) {
                aev__set_detail("%s:%d: section header without ']': %s", path, lineno, s);
                rc = AEV_ECONFIG;
                break;
            }
            if (*trim(end + 1) != '\0') {
                aev__set_detail("%s:%d: text after the section header: %s", path, lineno, s);
                rc = AEV_ECONFIG;
                break;
            }
            *end = '\0';
            char *name = trim(s + 1);
            if (*name == '\0' || strlen(name) >= sizeof section) {
                aev__set_detail("%s:%d: empty or over-long section name", path, lineno);
                rc = AEV_ECONFIG;
                break;
            }
            rc = aev__config_check_section(path, lineno, name);
            if (rc < 0)
                break;
            strcpy(section, name);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            aev__set_detail("%s:%d: expected \"key = value\", a [section] or a comment: %s", path,
                            lineno, s);
            rc = AEV_ECONFIG;
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        if (*key == '\0') {
            aev__set_detail("%s:%d: missing key before '='", path, lineno);
            rc = AEV_ECONFIG;
            break;
        }
        if (section[0] == '\0') {
            aev__set_detail("%s:%d: \"%s\" appears before any [section]", path, lineno, key);
            rc = AEV_ECONFIG;
            break;
        }
        rc = aev__config_check_entry(path, lineno, section, key, value);
        if (rc < 0)
            break;
        rc = add_entry(cfg, section, key, value, file, lineno);
        if (rc < 0)
            break;
    }
    if (rc == 0 && ferror(f)) {
        aev__set_detail("%s: read error", path);
        rc = AEV_ECONFIG;
    }
    fclose(f);
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int aev__config_read_dropins(aev__config_t *cfg, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* no drop-in directory is fine */
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".conf") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                rc = -ENOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0 && n > 1)
        qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            rc = aev__config_read_file(cfg, path, 1);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

const aev__config_entry_t *aev__config_find(const aev__config_t *cfg, const char *section,
                                            const char *key)
{
    /* Later entries override earlier ones: search from the end. */
    for (size_t i = cfg->len; i-- > 0;) {
        const aev__config_entry_t *e = &cfg->entries[i];
        if (strcmp(e->section, section) == 0 && strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

void aev__config_free(aev__config_t *cfg)
{
    for (size_t i = 0; i < cfg->len; i++) {
        free(cfg->entries[i].section);
        free(cfg->entries[i].key);
        free(cfg->entries[i].value);
    }
    free(cfg->entries);
    for (size_t i = 0; i < cfg->nfiles; i++)
        free(cfg->files[i]);
    free(cfg->files);
    memset(cfg, 0, sizeof *cfg);
}
