#include <malloc.h>
#include "CMalloc.h"

int dx_release_free_memory(void) { return malloc_trim(0); }
