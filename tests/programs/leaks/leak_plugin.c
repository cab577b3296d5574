/* A library loaded with dlopen by dlopen_leaks.c. Build:
 *   gcc -g -O1 -fno-builtin -fno-optimize-sibling-calls -pthread -shared -fPIC
 *       leak_plugin.c -o leak_plugin.so
 * plugin_leak:  a 1100-byte block nobody points to: definitely lost.
 * plugin_keep:  a 1200-byte block held by this library's global plugin_kept: still
 *               reachable while the library stays loaded; once it is dlclose'd the global
 *               is unmapped with it, and the block is definitely lost. */
#include <stdlib.h>
#include <string.h>

void *volatile plugin_kept;

__attribute__((noinline)) void *plugin_leak_block(void) {
    void *p = malloc(1100);
    memset(p, 0, 1100);
    return p;
}

__attribute__((noinline)) void *plugin_keep_block(void) {
    void *p = malloc(1200);
    memset(p, 0, 1200);
    return p;
}

void plugin_leak(void) { (void)plugin_leak_block(); }
void plugin_keep(void) { plugin_kept = plugin_keep_block(); }
