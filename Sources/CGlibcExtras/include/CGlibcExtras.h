// glibc functions that Swift's Glibc module does not import (malloc.h, and GNU extensions of
// spawn.h). Only DXDaemon imports this.
#ifndef CGLIBCEXTRAS_H
#define CGLIBCEXTRAS_H

#include <spawn.h>
#include <stddef.h>

/// Gives the heap's free pages back to the system (glibc malloc_trim(0)); returns 1 when
/// memory was released, 0 when none could be.
int dx_release_free_memory(void);

/// At most `arenas` malloc arenas for the process (mallopt M_ARENA_MAX); 1 when set.
int dx_limit_arenas(int arenas);

/// The heap as glibc's allocator sees it (mallinfo2): bytes handed out and not freed (small
/// blocks and mmapped ones), bytes free inside the heap's arenas (fragmentation: resident or
/// not, not in use), and the arenas' size plus the mmapped blocks. All 0 off glibc.
struct dx_heap {
    size_t in_use;
    size_t free_in_heap;
    size_t arena;
};
void dx_heap_usage(struct dx_heap *h);

/// Adds "close every descriptor from `fd` up" to a spawn's file actions
/// (posix_spawn_file_actions_addclosefrom_np, glibc 2.34); returns 0 or an error number.
int dx_spawn_close_from(posix_spawn_file_actions_t *actions, int fd);

#endif
