// glibc functions that Swift's Glibc module does not import (malloc.h, and GNU extensions of
// spawn.h). Only DXDaemon imports this.
#ifndef CGLIBCEXTRAS_H
#define CGLIBCEXTRAS_H

#include <spawn.h>

/// Gives the heap's free pages back to the system (glibc malloc_trim(0)); returns 1 when
/// memory was released, 0 when none could be.
int dx_release_free_memory(void);

/// Adds "close every descriptor from `fd` up" to a spawn's file actions
/// (posix_spawn_file_actions_addclosefrom_np, glibc 2.34); returns 0 or an error number.
int dx_spawn_close_from(posix_spawn_file_actions_t *actions, int fd);

#endif
