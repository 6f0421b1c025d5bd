// glibc's malloc_trim, which Swift's Glibc module does not import (malloc.h is not in it).
// Only DXDaemon imports this.
#ifndef CMALLOC_H
#define CMALLOC_H

/// Gives the heap's free pages back to the system (glibc malloc_trim(0)); returns 1 when
/// memory was released, 0 when none could be.
int dx_release_free_memory(void);

#endif
