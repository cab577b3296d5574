/* A library loaded with dlopen and unloaded with dlclose before the program exits. */
#include <stdlib.h>

__attribute__((noinline)) void *plugin_alloc(void) { return malloc(4242); }
