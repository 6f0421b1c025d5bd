#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include "CGlibcExtras.h"

#if defined(__GLIBC__)
#include <malloc.h>
int dx_release_free_memory(void) { return malloc_trim(0); }
int dx_limit_arenas(int arenas) { return mallopt(M_ARENA_MAX, arenas); }
int dx_spawn_close_from(posix_spawn_file_actions_t *actions, int fd) { return posix_spawn_file_actions_addclosefrom_np(actions, fd); }
void dx_heap_usage(struct dx_heap *h) {
    struct mallinfo2 m = mallinfo2();
    h->in_use = m.uordblks + m.hblkhd;
    h->free_in_heap = m.fordblks;
    h->arena = m.arena + m.hblkhd;
}
#else
int dx_limit_arenas(int arenas) { (void)arenas; return 0; }
void dx_heap_usage(struct dx_heap *h) { h->in_use = 0; h->free_in_heap = 0; h->arena = 0; }
int dx_release_free_memory(void) { return 0; }
int dx_spawn_close_from(posix_spawn_file_actions_t *actions, int fd) { (void)actions; (void)fd; return ENOSYS; }
#endif
