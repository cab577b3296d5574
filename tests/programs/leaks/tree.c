/* A binary tree of 15 nodes (32 bytes each, all from tree_node_new with one stack),
 * hanging from the global tree_root; node i has children 2i+1 and 2i+2:
 *
 *                 0
 *          1             2
 *       3     4       5      6
 *      7 8   9 10   11 12  13 14
 *
 * argv[1] = "sever" (default): node 0's left link is cut, so subtree 1 (7 nodes) is lost:
 *   node 1 definitely lost, its 6 descendants indirectly lost; node 2's left link is
 *   replaced by an interior pointer, so subtree 5 (3 nodes) is possibly lost; nodes 0, 2,
 *   6, 13, 14 stay reachable.
 * argv[1] = "drop": tree_root is cleared: node 0 definitely lost, 14 nodes indirectly lost.
 * The nodes are built by index in a loop (no recursion), so every node has the same
 * allocation stack and memcheck groups them by kind only. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NODES 15

struct tnode {
    struct tnode *left, *right;
    long value[2];
};

struct tnode *volatile tree_root;

__attribute__((noinline)) struct tnode *tree_node_new(long value) {
    struct tnode *n = malloc(sizeof *n);
    memset(n, 0, sizeof *n);
    n->value[0] = value;
    return n;
}

__attribute__((noinline)) void tree_build(void) {
    struct tnode *nodes[NODES];
    for (int i = 0; i < NODES; i++)
        nodes[i] = tree_node_new(i);
    for (int i = 0; 2 * i + 2 < NODES; i++) {
        nodes[i]->left = nodes[2 * i + 1];
        nodes[i]->right = nodes[2 * i + 2];
    }
    tree_root = nodes[0];
    /* Leave no copy of a node pointer in this (dead after return) frame. */
    memset(nodes, 0, sizeof nodes);
    __asm__ volatile("" : : "r"(nodes) : "memory");
}

__attribute__((noinline)) void tree_sever(void) {
    struct tnode *root = tree_root;
    root->left = NULL;
    root->right->left = (struct tnode *)((char *)root->right->left + 8);
}

__attribute__((noinline)) void tree_drop(void) { tree_root = NULL; }

int main(int argc, char **argv) {
    int drop = argc > 1 && !strcmp(argv[1], "drop");
    tree_build();
    if (drop)
        tree_drop();
    else
        tree_sever();
    static const char m1[] = "tree: severed\n", m2[] = "tree: dropped\n";
    if (drop)
        write(1, m2, sizeof m2 - 1);
    else
        write(1, m1, sizeof m1 - 1);
    return 0;
}
