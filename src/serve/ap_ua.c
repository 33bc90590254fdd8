/*
 * ap_ua: uap-core rules (libyaml + PCRE2) and the per-thread result cache.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "ap_ua.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "../core/ap_error.h"
#include "../core/ap_log.h"

#define OVEC_PAIRS 16 /* capture groups read: $1..$9 are all a rule can use */

enum { L_UA = 0, L_OS, L_DEV, L_COUNT };

#define LIT_MAX 32 /* bytes of a rule's required literal kept */
#define LIT_MIN 3  /* shorter literals filter too little to be worth a search */

struct rule {
    pcre2_code *re;
    char *rep[3];      /* family (family_/os_/device_replacement), brand, model: NULL if absent */
    char lit[LIT_MAX]; /* a substring every match contains ("" = none): the prefilter */
    uint8_t litlen;
    bool lit_caseless; /* lit is lower case; compare with the lower-cased User-Agent */
    uint16_t tri[3];   /* hashes of lit's first, middle and last 3-byte windows */
};

struct rule_list {
    struct rule *r;
    size_t n, cap;
};

struct ap_ua {
    struct rule_list lists[L_COUNT];
    uint32_t gen; /* tags cache entries: a handle's results never answer for another's */
};

static atomic_uint next_gen = 1;

/* ---- per-thread state ----------------------------------------------------------------------- */

struct cache_entry {
    uint64_t hash;
    uint32_t len;
    uint32_t gen; /* 0 = empty */
    uint8_t device, os, browser, bot;
};

#define TRI_BITS 65536 /* 3-gram presence bitmap of one User-Agent (hashed to 16 bits) */

struct tstate {
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    uint64_t tri[2][TRI_BITS / 64]; /* [0] the User-Agent as is, [1] lower-cased */
    struct cache_entry cache[AP_UA_CACHE_SLOTS];
};

static uint16_t tri_hash(const char *p)
{
    uint32_t v =
        (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[1] << 8 | (uint32_t)(uint8_t)p[2] << 16;
    return (uint16_t)((v * UINT32_C(0x9E3779B1)) >> 16);
}

static pthread_key_t tkey;
static pthread_once_t tonce = PTHREAD_ONCE_INIT;
static _Thread_local struct tstate *tl;

static void tstate_free(void *p)
{
    struct tstate *t = p;
    if (!t)
        return;
    pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mctx);
    free(t);
}

static void make_key(void)
{
    pthread_key_create(&tkey, tstate_free);
}

/* The calling thread's state, created on first use (the only allocation of a warm worker). */
static struct tstate *thread_state(void)
{
    if (tl)
        return tl;
    pthread_once(&tonce, make_key);
    struct tstate *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->md = pcre2_match_data_create(OVEC_PAIRS, NULL);
    t->mctx = pcre2_match_context_create(NULL);
    if (!t->md || !t->mctx) {
        tstate_free(t);
        return NULL;
    }
    pcre2_set_match_limit(t->mctx, AP_UA_MATCH_LIMIT);
    pthread_setspecific(tkey, t); /* frees it when the thread exits */
    tl = t;
    return t;
}

/* ---- loading ------------------------------------------------------------------------------ */

static void free_list(struct rule_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        pcre2_code_free(l->r[i].re);
        for (int k = 0; k < 3; k++)
            free(l->r[i].rep[k]);
    }
    free(l->r);
    memset(l, 0, sizeof(*l));
}

void ap_ua_close(struct ap_ua *u)
{
    if (!u)
        return;
    for (int i = 0; i < L_COUNT; i++)
        free_list(&u->lists[i]);
    free(u);
}

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* ---- the literal prefilter -----------------------------------------------------------------
 * Running ~1,200 regexes on a User-Agent costs 100-400 us, mostly rules that cannot match. For
 * each regex we derive, conservatively, one literal substring that every match must contain
 * (the longest run of plain characters on the regex's mandatory path: not under an alternation,
 * an optional quantifier, a character class or a lookaround), and skip the regex when the
 * User-Agent does not contain it. Anything the scanner does not fully understand ends the
 * current run, so a literal is only ever missing, never wrong; the uap-core test suite in
 * tests/unit/test_ap_ua.c checks the result against the reference families. */

struct lit_scan {
    const char *re;
    size_t n;
    char cur[LIT_MAX], best[LIT_MAX];
    size_t curlen, bestlen;
    bool caseless;
};

static void lit_flush(struct lit_scan *s)
{
    if (s->curlen > s->bestlen) {
        memcpy(s->best, s->cur, s->curlen);
        s->bestlen = s->curlen;
    }
    s->curlen = 0;
}

static void lit_add(struct lit_scan *s, char c)
{
    if (s->curlen == LIT_MAX) /* keep the first LIT_MAX bytes: still a required substring */
        return;
    s->cur[s->curlen++] = c;
}

/* A quantifier at re[i]: its length (lazy/possessive suffix included) and whether it allows
 * zero repetitions; 0 if there is none ('{' that is not {n}, {n,}, {n,m} is a literal). */
static size_t quantifier(const struct lit_scan *s, size_t i, bool *zero)
{
    size_t k = i;
    if (i >= s->n)
        return 0;
    char c = s->re[i];
    if (c == '?' || c == '*' || c == '+') {
        *zero = c != '+';
        k++;
    } else if (c == '{') {
        size_t j = i + 1, digits = 0;
        unsigned min = 0;
        while (j < s->n && s->re[j] >= '0' && s->re[j] <= '9' && digits < 6) {
            min = min * 10 + (unsigned)(s->re[j++] - '0');
            digits++;
        }
        if (digits == 0 && !(j < s->n && s->re[j] == ',')) /* "{,n}" is {0,n} in newer PCRE2 */
            return 0;
        if (j < s->n && s->re[j] == ',') {
            j++;
            while (j < s->n && s->re[j] >= '0' && s->re[j] <= '9')
                j++;
        }
        if (j >= s->n || s->re[j] != '}')
            return 0;
        *zero = min == 0;
        k = j + 1;
    } else {
        return 0;
    }
    if (k < s->n && (s->re[k] == '?' || s->re[k] == '+'))
        k++;
    return k - i;
}

/* Skips a character class starting at re[i] == '['; returns the index after its ']'. */
static size_t skip_class(const struct lit_scan *s, size_t i)
{
    i++;
    if (i < s->n && s->re[i] == '^')
        i++;
    if (i < s->n && s->re[i] == ']')
        i++;
    while (i < s->n && s->re[i] != ']') {
        if (s->re[i] == '\\')
            i += 2;
        else if (s->re[i] == '[' && i + 1 < s->n && s->re[i + 1] == ':') {
            const char *e = strstr(s->re + i + 2, ":]");
            i = e ? (size_t)(e - s->re) + 2 : s->n;
        } else
            i++;
    }
    return i < s->n ? i + 1 : s->n;
}

/* The index of the ')' closing the group opened at re[i]; *alt: a '|' at the group's own
 * level. s->n if unbalanced. */
static size_t group_end(const struct lit_scan *s, size_t i, bool *alt)
{
    int depth = 0;
    *alt = false;
    while (i < s->n) {
        char c = s->re[i];
        if (c == '\\') {
            i += 2;
            continue;
        }
        if (c == '[') {
            i = skip_class(s, i);
            continue;
        }
        if (c == '(')
            depth++;
        else if (c == ')' && --depth == 0)
            return i;
        else if (c == '|' && depth == 1)
            *alt = true;
        i++;
    }
    return s->n;
}

/* Length of an escape sequence at re[i] == '\\' and its literal character (0: not a literal). */
static size_t escape(const struct lit_scan *s, size_t i, char *lit)
{
    *lit = 0;
    if (i + 1 >= s->n)
        return 1;
    char c = s->re[i + 1];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum) {
        *lit = c;
        return 2;
    }
    size_t k = i + 2;
    if ((c == 'x' || c == 'p' || c == 'P' || c == 'N' || c == 'o' || c == 'g' || c == 'k') &&
        k < s->n && (s->re[k] == '{' || s->re[k] == '<' || s->re[k] == '\'')) {
        char close = s->re[k] == '{' ? '}' : s->re[k] == '<' ? '>' : '\'';
        while (k < s->n && s->re[k] != close)
            k++;
        return (k < s->n ? k + 1 : s->n) - i;
    }
    if (c == 'x') {
        while (k < s->n && k < i + 4 && strchr("0123456789abcdefABCDEF", s->re[k]))
            k++;
    } else if (c == 'c' || c == 'p' || c == 'P') {
        k++;
    } else if (c >= '0' && c <= '9') {
        while (k < s->n && s->re[k] >= '0' && s->re[k] <= '9')
            k++;
    } else if (c == 'Q') {
        const char *e = strstr(s->re + k, "\\E");
        k = e ? (size_t)(e - s->re) + 2 : s->n;
    }
    return k - i;
}

/* Scans re[i..end): one sequence without top-level alternation. */
static void lit_seq(struct lit_scan *s, size_t i, size_t end)
{
    while (i < end) {
        char c = s->re[i], lit = 0;
        bool zero = false;
        size_t q;
        if (c == '(') {
            bool alt;
            size_t e = group_end(s, i, &alt), body = i + 1;
            bool transparent = !alt && e < s->n;
            if (transparent && s->re[i + 1] == '?') {
                const char *g = s->re + i + 2;
                if (g[0] == ':') {
                    body = i + 3;
                } else if ((g[0] == '<' && g[1] != '=' && g[1] != '!') ||
                           (g[0] == 'P' && g[1] == '<')) {
                    const char *gt = memchr(g, '>', e - (size_t)(g - s->re));
                    body = gt ? (size_t)(gt - s->re) + 1 : e;
                } else if ((g[0] >= 'a' && g[0] <= 'z') || g[0] == '-' || g[0] == '^') {
                    /* option setting: (?i) or (?i:...); any 'i' makes the whole rule caseless */
                    size_t k = i + 2;
                    while (k < e && s->re[k] != ':')
                        if (s->re[k++] == 'i')
                            s->caseless = true;
                    if (k >= e) { /* (?i) alone: no text */
                        i = e + 1;
                        continue;
                    }
                    body = k + 1;
                } else {
                    transparent = false; /* lookaround, atomic group, comment, condition */
                }
            }
            q = e < s->n ? quantifier(s, e + 1, &zero) : 0;
            if (!transparent || (q && zero)) {
                lit_flush(s);
                i = e < s->n ? e + 1 + q : s->n;
                continue;
            }
            lit_seq(s, body, e); /* the group's text is on the mandatory path */
            if (q)
                lit_flush(s); /* repeated: what follows is not adjacent to its first copy */
            i = e + 1 + q;
            continue;
        }
        if (c == '[') {
            lit_flush(s);
            i = skip_class(s, i);
            i += quantifier(s, i, &zero);
            continue;
        }
        if (c == '\\') {
            i += escape(s, i, &lit);
            if (!lit) {
                lit_flush(s);
                i += quantifier(s, i, &zero);
                continue;
            }
        } else if (c == '.' || c == '^' || c == '$' || c == '|' || c == ')') {
            lit_flush(s);
            i++;
            i += quantifier(s, i, &zero);
            continue;
        } else {
            lit = c;
            i++;
        }
        q = quantifier(s, i, &zero);
        if (q && zero) {
            lit_flush(s); /* optional character: the run ends before it */
        } else {
            lit_add(s, lit);
            if (q)
                lit_flush(s);
        }
        i += q;
    }
}

/* Fills r->lit for regex (caseless: compiled with PCRE2_CASELESS). */
static void rule_literal(struct rule *r, const char *regex, bool caseless)
{
    struct lit_scan s = {.re = regex, .n = strlen(regex), .caseless = caseless};
    bool alt = false;
    /* a top-level '|' anywhere: no mandatory text at all */
    int depth = 0;
    for (size_t i = 0; i < s.n; i++) {
        char c = regex[i];
        if (c == '\\') {
            i++;
        } else if (c == '[') {
            i = skip_class(&s, i) - 1;
        } else if (c == '(') {
            depth++;
        } else if (c == ')') {
            depth--;
        } else if (c == '|' && depth == 0) {
            alt = true;
        }
    }
    if (strstr(regex, "(?i") || strstr(regex, "(?-") || strstr(regex, "(?x"))
        s.caseless = true; /* inline options: compare caselessly (never wrong, maybe weaker) */
    if (!alt)
        lit_seq(&s, 0, s.n);
    lit_flush(&s);
    if (s.bestlen < LIT_MIN || strstr(regex, "(?x") || strchr(regex, '#'))
        return; /* extended syntax would make spaces and '#' meaningless: no prefilter */
    memcpy(r->lit, s.best, s.bestlen);
    r->litlen = (uint8_t)s.bestlen;
    r->lit_caseless = s.caseless;
    if (s.caseless)
        for (size_t i = 0; i < s.bestlen; i++)
            r->lit[i] = ap__ascii_lower(r->lit[i]);
    r->tri[0] = tri_hash(r->lit);
    r->tri[1] = tri_hash(r->lit + (r->litlen - 3) / 2);
    r->tri[2] = tri_hash(r->lit + r->litlen - 3);
}

/* Adds one {regex, regex_flag, *_replacement} mapping to list l. Returns AP_OK, AP_ENOMEM,
 * AP_ELIMIT; a regex that does not compile is skipped (counted in *bad). */
static int add_rule(yaml_document_t *doc, yaml_node_t *m, int list, struct rule_list *l,
                    size_t *bad)
{
    static const char *const FAMILY_KEY[L_COUNT] = {"family_replacement", "os_replacement",
                                                    "device_replacement"};
    const char *regex = NULL, *flag = NULL, *rep[3] = {NULL, NULL, NULL};
    if (m->type != YAML_MAPPING_NODE)
        return AP_OK;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        const char *v = scalar(yaml_document_get_node(doc, p->value));
        if (!k || !v)
            continue;
        if (!strcmp(k, "regex"))
            regex = v;
        else if (!strcmp(k, "regex_flag"))
            flag = v;
        else if (!strcmp(k, FAMILY_KEY[list]))
            rep[0] = v;
        else if (list == L_DEV && !strcmp(k, "brand_replacement"))
            rep[1] = v;
        else if (list == L_DEV && !strcmp(k, "model_replacement"))
            rep[2] = v;
    }
    if (!regex)
        return AP_OK;
    if (l->n >= AP_UA_MAX_RULES)
        return AP_ELIMIT;
    int errcode;
    PCRE2_SIZE erroff;
    uint32_t opts = flag && strchr(flag, 'i') ? PCRE2_CASELESS : 0;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)regex, PCRE2_ZERO_TERMINATED, opts, &errcode, &erroff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        ap_log_debug("ua: skipping a regex that does not compile (%s at %zu): %s", (char *)msg,
                     (size_t)erroff, regex);
        (*bad)++;
        return AP_OK;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT the interpreter runs it */
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        struct rule *r = realloc(l->r, nc * sizeof(*r));
        if (!r) {
            pcre2_code_free(re);
            return AP_ENOMEM;
        }
        l->r = r;
        l->cap = nc;
    }
    struct rule *r = &l->r[l->n];
    memset(r, 0, sizeof(*r));
    r->re = re;
    rule_literal(r, regex, opts & PCRE2_CASELESS);
    l->n++;
    for (int k = 0; k < 3; k++)
        if (rep[k] && !(r->rep[k] = strdup(rep[k])))
            return AP_ENOMEM;
    return AP_OK;
}

static int load_yaml(struct ap_ua *u, FILE *f, size_t *bad)
{
    static const char *const LIST_KEY[L_COUNT] = {"user_agent_parsers", "os_parsers",
                                                  "device_parsers"};
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = AP_OK;
    if (!yaml_parser_initialize(&parser))
        return AP_ENOMEM;
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        ap_log_warn("ua: YAML error at line %zu: %s", (size_t)parser.problem_mark.line + 1,
                    parser.problem ? parser.problem : "?");
        yaml_parser_delete(&parser);
        return AP_ECORRUPT;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = AP_ECORRUPT;
        goto done;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(yaml_document_get_node(&doc, p->key));
        yaml_node_t *seq = yaml_document_get_node(&doc, p->value);
        int list = -1;
        for (int i = 0; k && i < L_COUNT; i++)
            if (!strcmp(k, LIST_KEY[i]))
                list = i;
        if (list < 0 || !seq || seq->type != YAML_SEQUENCE_NODE)
            continue;
        for (yaml_node_item_t *it = seq->data.sequence.items.start;
             it < seq->data.sequence.items.top; it++) {
            yaml_node_t *m = yaml_document_get_node(&doc, *it);
            if (m && (rc = add_rule(&doc, m, list, &u->lists[list], bad)))
                goto done;
        }
    }
    if (u->lists[L_UA].n == 0 && u->lists[L_OS].n == 0 && u->lists[L_DEV].n == 0)
        rc = AP_ECORRUPT;
done:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

struct ap_ua *ap_ua_open(const char *regexes_path, int *err)
{
    struct ap_ua *u = NULL;
    size_t bad = 0;
    int rc;
    FILE *f = fopen(regexes_path, "re");
    if (!f) {
        rc = AP_ENOTFOUND;
        goto fail;
    }
    if (!(u = calloc(1, sizeof(*u)))) {
        rc = AP_ENOMEM;
        goto fail;
    }
    u->gen = atomic_fetch_add(&next_gen, 1);
    if (u->gen == 0) /* 0 marks an empty cache slot */
        u->gen = atomic_fetch_add(&next_gen, 1);
    if ((rc = load_yaml(u, f, &bad)))
        goto fail;
    fclose(f);
    if (bad)
        ap_log_warn("ua: %zu regexes of %s do not compile with PCRE2 and were skipped", bad,
                    regexes_path);
    return u;
fail:
    if (f)
        fclose(f);
    ap_ua_close(u);
    if (err)
        *err = rc;
    return NULL;
}

struct ap_ua *ap_ua_open_setting(const char *setting)
{
    if (setting && !strcmp(setting, AP_UA_SETTING_NONE)) {
        ap_log_info("ua: disabled (--uap-regexes none)");
        return NULL;
    }
    const char *path = setting && *setting ? setting : AP_UA_DEFAULT_REGEXES;
    struct timespec t0, t1;
    int err = AP_OK;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct ap_ua *u = ap_ua_open(path, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!u) {
        ap_log_warn("ua: cannot load User-Agent rules from %s (%s; install uap-core with "
                    "scripts/setup.sh or pass --uap-regexes FILE); serving without device data",
                    path, ap_strerror(err));
        return NULL;
    }
    ap_log_info("ua: %zu browser, %zu OS and %zu device rules from %s compiled in %.0f ms",
                u->lists[L_UA].n, u->lists[L_OS].n, u->lists[L_DEV].n, path,
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return u;
}

void ap_ua_counts(const struct ap_ua *u, size_t *ua_rules, size_t *os_rules, size_t *dev_rules)
{
    *ua_rules = u ? u->lists[L_UA].n : 0;
    *os_rules = u ? u->lists[L_OS].n : 0;
    *dev_rules = u ? u->lists[L_DEV].n : 0;
}

/* ---- matching ----------------------------------------------------------------------------- */

/* Writes template with $1..$9 replaced by the groups of the last match (unset groups: empty),
 * or group 1 when template is NULL, trimmed, into out[cap]. */
static void expand(const char *template, const char *subj, const PCRE2_SIZE *ov, int ngroups,
                   char *out, size_t cap)
{
    size_t n = 0;
    char one[3] = "$1";
    const char *t = template ? template : one;
    for (; *t && n + 1 < cap; t++) {
        if (t[0] == '$' && t[1] >= '1' && t[1] <= '9') {
            int g = t[1] - '0';
            t++;
            if (g < ngroups && ov[2 * g] != PCRE2_UNSET) {
                size_t len = ov[2 * g + 1] - ov[2 * g];
                if (len > cap - 1 - n)
                    len = cap - 1 - n;
                memcpy(out + n, subj + ov[2 * g], len);
                n += len;
            }
            continue;
        }
        out[n++] = *t;
    }
    out[n] = '\0';
    size_t s = 0;
    while (out[s] == ' ')
        s++;
    while (n > s && out[n - 1] == ' ')
        n--;
    memmove(out, out + s, n - s);
    out[n - s] = '\0';
}

/* Runs list l over subj; on the first match fills fam (and brand/model for devices). Returns
 * true if a rule matched. */
static bool run_list(const struct rule_list *l, const char *subj, const char *lower, size_t len,
                     struct tstate *t, char *fam, char *brand, char *model, size_t cap)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct rule *r = &l->r[i];
        if (r->litlen) {
            /* cannot match if the mandatory literal is missing: three bitmap probes first,
             * the exact search only when all three 3-grams are present */
            const uint64_t *bm = t->tri[r->lit_caseless];
            bool maybe = true;
            for (int k = 0; k < 3 && maybe; k++)
                maybe = (bm[r->tri[k] >> 6] >> (r->tri[k] & 63)) & 1u;
            if (!maybe || !memmem(r->lit_caseless ? lower : subj, len, r->lit, r->litlen))
                continue;
        }
        int rc = pcre2_match(r->re, (PCRE2_SPTR)subj, len, 0, 0, t->md, t->mctx);
        if (rc < 0)
            continue; /* no match, or the match limit: treat as no match */
        int ngroups = rc == 0 ? OVEC_PAIRS : rc;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        expand(r->rep[0], subj, ov, ngroups, fam, cap);
        if (brand)
            r->rep[1] ? expand(r->rep[1], subj, ov, ngroups, brand, cap) : (void)(brand[0] = 0);
        if (model)
            expand(r->rep[2], subj, ov, ngroups, model, cap);
        return true;
    }
    return false;
}

/* ASCII case-insensitive search of a lower-case needle. */
static bool has(struct ap_span s, const char *needle)
{
    size_t n = strlen(needle);
    if (n > s.len)
        return false;
    for (size_t i = 0; i + n <= s.len; i++) {
        size_t k = 0;
        while (k < n && ap__ascii_lower(s.p[i + k]) == needle[k])
            k++;
        if (k == n)
            return true;
    }
    return false;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool is_one_of(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(s, *list))
            return true;
    return false;
}

static enum ap_serve_browser map_browser(const char *f)
{
    static const char *const CHROME[] = {
        "Chrome",   "Chrome Mobile",  "Chrome Mobile iOS", "Chrome Mobile WebView",
        "Chromium", "HeadlessChrome", "Chrome Frame",      NULL};
    static const char *const SAFARI[] = {"Safari", "Mobile Safari", "Mobile Safari UI/WKWebView",
                                         NULL};
    if (!*f)
        return AP_SERVE_BROWSER_OTHER;
    if (is_one_of(f, CHROME))
        return AP_SERVE_BROWSER_CHROME;
    if (starts(f, "Firefox"))
        return AP_SERVE_BROWSER_FIREFOX;
    if (is_one_of(f, SAFARI))
        return AP_SERVE_BROWSER_SAFARI;
    if (!strcmp(f, "Edge") || !strcmp(f, "Edge Mobile"))
        return AP_SERVE_BROWSER_EDGE;
    if (starts(f, "Opera"))
        return AP_SERVE_BROWSER_OPERA;
    if (!strcmp(f, "Samsung Internet"))
        return AP_SERVE_BROWSER_SAMSUNG;
    return AP_SERVE_BROWSER_OTHER;
}

static enum ap_serve_os map_os(const char *f)
{
    static const char *const LINUX[] = {
        "Linux",   "Ubuntu",   "Debian",    "Fedora",     "Red Hat",   "Gentoo",   "Mint",
        "SUSE",    "openSUSE", "CentOS",    "Arch Linux", "Slackware", "Mandriva", "Kubuntu",
        "Xubuntu", "Mageia",   "PCLinuxOS", "Puppy",      "Knoppix",   NULL};
    if (!*f || !strcmp(f, "Other"))
        return AP_SERVE_OS_OTHER;
    if (starts(f, "Windows") && strcmp(f, "Windows Phone") != 0 &&
        strcmp(f, "Windows Mobile") != 0 && strcmp(f, "Windows CE") != 0)
        return AP_SERVE_OS_WINDOWS;
    if (starts(f, "Mac OS") || !strcmp(f, "macOS"))
        return AP_SERVE_OS_MACOS;
    if (!strcmp(f, "iOS") || !strcmp(f, "iPadOS"))
        return AP_SERVE_OS_IOS;
    if (!strcmp(f, "Android"))
        return AP_SERVE_OS_ANDROID;
    if (!strcmp(f, "Chrome OS"))
        return AP_SERVE_OS_CHROMEOS;
    if (is_one_of(f, LINUX) || strstr(f, "Linux"))
        return AP_SERVE_OS_LINUX;
    return AP_SERVE_OS_OTHER;
}

static enum ap_serve_device map_device(struct ap_span ua, const char *dev, const char *brand,
                                       const char *model, enum ap_serve_os os, bool *bot)
{
    static const char *const TV_TOKENS[] = {
        "smart-tv",  "smarttv",  "smart tv",  "hbbtv",       "appletv", "apple tv", "crkey",
        "roku",      "googletv", "google tv", "android tv",  "bravia",  "web0s",    "netcast",
        "philipstv", "aftb",     "aftm",      "afts",        "aftt",    "aftk",     "aftn",
        "aftr",      "aftss",    "tizen tv",  "playstation", "xbox",    "nintendo", "viera",
        "aquos",     "dtv",      "tvos",      NULL};
    static const char *const MOBILE_DEV[] = {
        "iPhone",        "iPod", "Generic Smartphone", "Generic Feature Phone", "Smartphone",
        "Feature Phone", NULL};
    *bot = !strcmp(dev, "Spider");
    if (*bot)
        return AP_SERVE_DEVICE_OTHER;
    for (size_t i = 0; TV_TOKENS[i]; i++)
        if (has(ua, TV_TOKENS[i]))
            return AP_SERVE_DEVICE_CTV;
    if (strstr(dev, "TV") || !strcmp(dev, "Chromecast") || !strcmp(dev, "AppleTV") ||
        strstr(dev, "Inettv"))
        return AP_SERVE_DEVICE_CTV;
    if (!strcmp(dev, "iPad") || strstr(dev, "Tablet") || strstr(dev, "Kindle") ||
        strstr(model, "Tablet") || strstr(model, "Kindle") || has(ua, "ipad") ||
        has(ua, "tablet") || has(ua, "kindle") || has(ua, "silk/") || has(ua, "playbook"))
        return AP_SERVE_DEVICE_TABLET;
    if (os == AP_SERVE_OS_ANDROID)
        return has(ua, "mobile") ? AP_SERVE_DEVICE_MOBILE : AP_SERVE_DEVICE_TABLET;
    if (is_one_of(dev, MOBILE_DEV) || os == AP_SERVE_OS_IOS || has(ua, "mobi") ||
        has(ua, "phone") || !strcmp(brand, "Nokia") || !strcmp(brand, "BlackBerry"))
        return AP_SERVE_DEVICE_MOBILE;
    if (os == AP_SERVE_OS_WINDOWS || os == AP_SERVE_OS_MACOS || os == AP_SERVE_OS_LINUX ||
        os == AP_SERVE_OS_CHROMEOS || !strcmp(dev, "Mac"))
        return AP_SERVE_DEVICE_DESKTOP;
    return AP_SERVE_DEVICE_OTHER;
}

static uint64_t hash64(const char *p, size_t n)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * UINT64_C(1099511628211);
    return h ^ (h >> 29);
}

static void parse_uncached(struct ap_ua *u, struct ap_span ua, struct tstate *t,
                           struct ap_ua_result *out)
{
    char brand[AP_UA_FAMILY_MAX] = "", model[AP_UA_FAMILY_MAX] = "";
    char lower[AP_UA_MAX_LEN];
    for (size_t i = 0; i < ua.len; i++)
        lower[i] = ap__ascii_lower(ua.p[i]);
    memset(t->tri, 0, sizeof(t->tri));
    for (size_t i = 0; i + 3 <= ua.len; i++) {
        uint16_t h0 = tri_hash(ua.p + i), h1 = tri_hash(lower + i);
        t->tri[0][h0 >> 6] |= UINT64_C(1) << (h0 & 63);
        t->tri[1][h1 >> 6] |= UINT64_C(1) << (h1 & 63);
    }
    out->browser_family[0] = out->os_family[0] = out->device_family[0] = '\0';
    if (!run_list(&u->lists[L_UA], ua.p, lower, ua.len, t, out->browser_family, NULL, NULL,
                  AP_UA_FAMILY_MAX) ||
        !out->browser_family[0])
        snprintf(out->browser_family, AP_UA_FAMILY_MAX, "Other");
    if (!run_list(&u->lists[L_OS], ua.p, lower, ua.len, t, out->os_family, NULL, NULL,
                  AP_UA_FAMILY_MAX) ||
        !out->os_family[0])
        snprintf(out->os_family, AP_UA_FAMILY_MAX, "Other");
    if (!run_list(&u->lists[L_DEV], ua.p, lower, ua.len, t, out->device_family, brand, model,
                  AP_UA_FAMILY_MAX) ||
        !out->device_family[0])
        snprintf(out->device_family, AP_UA_FAMILY_MAX, "Other");
    out->browser = map_browser(out->browser_family);
    out->os = map_os(out->os_family);
    out->device = map_device(ua, out->device_family, brand, model, out->os, &out->is_bot);
}

void ap_ua_classify(struct ap_ua *u, struct ap_span ua, bool cached, struct ap_ua_result *out)
{
    memset(out, 0, sizeof(*out));
    if (!u || ua.len == 0 || !ua.p)
        return;
    if (ua.len > AP_UA_MAX_LEN)
        ua.len = AP_UA_MAX_LEN;
    struct tstate *t = thread_state();
    if (!t)
        return; /* out of memory: unknown, never a failed request */
    struct cache_entry *e = NULL;
    uint64_t h = 0;
    if (cached) {
        h = hash64(ua.p, ua.len);
        e = &t->cache[h & (AP_UA_CACHE_SLOTS - 1)];
        if (e->gen == u->gen && e->hash == h && e->len == ua.len) {
            out->device = e->device;
            out->os = e->os;
            out->browser = e->browser;
            out->is_bot = e->bot;
            return;
        }
    }
    parse_uncached(u, ua, t, out);
    if (e)
        *e = (struct cache_entry){.hash = h,
                                  .len = (uint32_t)ua.len,
                                  .gen = u->gen,
                                  .device = (uint8_t)out->device,
                                  .os = (uint8_t)out->os,
                                  .browser = (uint8_t)out->browser,
                                  .bot = out->is_bot};
}

void ap_ua_parse(struct ap_ua *u, struct ap_span ua, struct ap_serve_ctx *ctx)
{
    struct ap_ua_result r;
    ap_ua_classify(u, ua, true, &r);
    ctx->device = r.device;
    ctx->os = r.os;
    ctx->browser = r.browser;
}
