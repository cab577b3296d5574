// Torture 8: a Go program calling C's malloc and free through cgo from 8 goroutines,
// 2,000 blocks each (the Go runtime's own memory does not go through malloc).
package main

/*
#include <stdlib.h>
static void *alloc(size_t n) { return malloc(n); }
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

func main() {
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
	fmt.Println("go: 8 goroutines x 2000 C mallocs")
}
