#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include "CGlibcExtras.h"

#if defined(__GLIBC__)
#include <malloc.h>
int dx_release_free_memory(void) { return malloc_trim(0); }
int dx_spawn_close_from(posix_spawn_file_actions_t *actions, int fd) { return posix_spawn_file_actions_addclosefrom_np(actions, fd); }
#else
int dx_release_free_memory(void) { return 0; }
int dx_spawn_close_from(posix_spawn_file_actions_t *actions, int fd) { (void)actions; (void)fd; return ENOSYS; }
#endif
