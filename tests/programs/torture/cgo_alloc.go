// Torture 8: a Go program calling C's malloc and free through cgo from 8 goroutines,
// 2,000 blocks each (the Go runtime's own memory does not go through malloc). Then, for
// the leak check: 3 blocks of 100 bytes whose pointers are dropped (C code: definitely
// lost) and 2 blocks of 200 bytes kept in a Go global slice (still reachable: the Go
// heap is scanned as a root). It ends with os.Exit(3): runtime.exit, not libc's exit.
// With the argument "race", 8 goroutines call os.Exit(3) at once instead.
package main

/*
#include <stdlib.h>
static void *alloc(size_t n) { return malloc(n); }
static __attribute__((noinline)) void drop_three(void) {
	for (int i = 0; i < 3; i++) {
		char *volatile p = malloc(100);
		p[0] = 1;
	}
}
// Overwrite the dead frames drop_three (and the recorder's malloc hook below it) left on
// this thread's stack, so no stale copy of a dropped pointer stays where a conservative
// scan would see it: at a Go exit, the main thread's stack (cgo calls from the main
// goroutine run there) is scanned whole, as its live part is not known.
static __attribute__((noinline)) void scrub(void) {
	volatile char buf[65536];
	for (size_t i = 0; i < sizeof buf; i++) buf[i] = 0;
}
static void leak(void) {
	drop_three();
	scrub();
}
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"unsafe"
)

var kept []unsafe.Pointer

func main() {
	if len(os.Args) > 1 && os.Args[1] == "race" {
		// 8 goroutines call os.Exit at the same moment: one exit wins, none crashes.
		start := make(chan struct{})
		for g := 0; g < 8; g++ {
			go func() {
				<-start
				C.free(C.alloc(32))
				os.Exit(3)
			}()
		}
		close(start)
		select {}
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				p := C.alloc(C.size_t(16 + i%64))
				C.free(unsafe.Pointer(p))
			}
		}(g)
	}
	wg.Wait()
	C.leak()
	for i := 0; i < 2; i++ {
		kept = append(kept, C.alloc(200))
	}
	fmt.Println("go: 8 goroutines x 2000 C mallocs")
	os.Exit(3)
}
