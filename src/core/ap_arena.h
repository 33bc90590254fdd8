/*
 * ap_arena: a bump allocator for request (or snapshot-build) lifetimes.
 *
 * Allocations come from chunks the arena owns; ap_arena_reset() frees everything at once and
 * keeps the first chunk for reuse, so a warm arena allocates nothing from malloc. Each chunk is
 * capped and the arena as a whole has a hard cap (max_bytes): past it, ap_arena_alloc() returns
 * NULL. Building with -DAP_ARENA_DEBUG makes every allocation its own malloc so ASan and
 * valgrind see overflows. Not thread-safe: one arena belongs to one thread at a time.
 */
#ifndef AP_ARENA_H
#define AP_ARENA_H

#include <stddef.h>

#include "ap_span.h"

struct ap_arena_chunk;

struct ap_arena {
    struct ap_arena_chunk *head; /* current chunk, a list through ->next */
    size_t chunk_size;           /* default size of a new chunk */
    size_t max_bytes;            /* hard cap over all chunks */
    size_t used_bytes;           /* bytes in chunks currently held */
};

/* Sets up an empty arena; allocates nothing yet. */
void ap_arena_init(struct ap_arena *a, size_t chunk_size, size_t max_bytes);

/* Returns 16-byte aligned memory owned by the arena, valid until reset/destroy; NULL when the
 * cap is reached or malloc fails. */
void *ap_arena_alloc(struct ap_arena *a, size_t size);

/* Like ap_arena_alloc, zero-filled. */
void *ap_arena_calloc(struct ap_arena *a, size_t n, size_t size);

/* Copies a span/C string into the arena, NUL-terminated. NULL on failure. */
char *ap_arena_strndup(struct ap_arena *a, const char *s, size_t len);

/* Frees every allocation; keeps one chunk for reuse. */
void ap_arena_reset(struct ap_arena *a);

/* Frees everything including the kept chunk. */
void ap_arena_destroy(struct ap_arena *a);

#endif
