//go:build ignore

// gen writes frames_gen.go from frames.txt; go generate runs it.
package main

import (
	"log"
	"os"

	"github.com/chatd/chatd/codec/internal/framegen"
)

func main() {
	src, err := framegen.File("frames.txt")
	if err == nil {
		err = os.WriteFile("frames_gen.go", src, 0o644)
	}
	if err != nil {
		log.Fatal(err)
	}
}
