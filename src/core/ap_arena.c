#include "ap_arena.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct ap_arena_chunk {
    struct ap_arena_chunk *next;
    size_t size; /* usable bytes in data[] */
    size_t used;
    size_t pad; /* keeps data[] at a 16-byte offset: malloc's alignment carries over */
    unsigned char data[];
};
_Static_assert(offsetof(struct ap_arena_chunk, data) % 16 == 0, "arena data alignment");

#define ALIGN16(n) (((n) + 15u) & ~(size_t)15u)

void ap_arena_init(struct ap_arena *a, size_t chunk_size, size_t max_bytes)
{
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 4096;
    a->max_bytes = max_bytes;
    a->used_bytes = 0;
}

static struct ap_arena_chunk *chunk_new(struct ap_arena *a, size_t need)
{
#ifdef AP_ARENA_DEBUG
    size_t size = need; /* one malloc per allocation, exactly sized: ASan sees overflows */
#else
    size_t size = need > a->chunk_size ? need : a->chunk_size;
#endif
    if (a->used_bytes + size > a->max_bytes)
        return NULL;
    struct ap_arena_chunk *c = malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    c->size = size;
    c->used = 0;
    c->next = a->head;
    a->head = c;
    a->used_bytes += size;
    return c;
}

void *ap_arena_alloc(struct ap_arena *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (size > a->max_bytes)
        return NULL;
#ifdef AP_ARENA_DEBUG
    struct ap_arena_chunk *c = chunk_new(a, size);
    if (!c)
        return NULL;
    c->used = size;
    return c->data;
#else
    size = ALIGN16(size);
    struct ap_arena_chunk *c = a->head;
    if (!c || c->size - c->used < size) {
        c = chunk_new(a, size);
        if (!c)
            return NULL;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
#endif
}

void *ap_arena_calloc(struct ap_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = ap_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *ap_arena_strndup(struct ap_arena *a, const char *s, size_t len)
{
    char *p = ap_arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void ap_arena_reset(struct ap_arena *a)
{
    struct ap_arena_chunk *c = a->head;
    if (!c)
        return;
    /* keep the oldest chunk of default size (the last in the list) */
    struct ap_arena_chunk *keep = NULL;
    while (c) {
        struct ap_arena_chunk *next = c->next;
#ifndef AP_ARENA_DEBUG
        if (!next && c->size == a->chunk_size) {
            keep = c;
            break;
        }
#endif
        free(c);
        c = next;
    }
    a->head = keep;
    a->used_bytes = keep ? keep->size : 0;
    if (keep) {
        keep->used = 0;
        keep->next = NULL;
    }
}

void ap_arena_destroy(struct ap_arena *a)
{
    struct ap_arena_chunk *c = a->head;
    while (c) {
        struct ap_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used_bytes = 0;
}
