package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
)

// sizeFlag is a byte-count flag that reads and prints binary suffixes
// (64MiB, 1GiB; KiB, MiB, GiB, TiB, or a bare number of bytes), so
// defaults read as the sizes they are rather than as 67108864.
type sizeFlag[T int | int64 | uint64] struct{ p *T }

var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

func sizeVar[T int | int64 | uint64](fs *flag.FlagSet, p *T, name string, value T, usage string) {
	*p = value
	fs.Var(sizeFlag[T]{p}, name, usage)
}

func (s sizeFlag[T]) String() string {
	if s.p == nil {
		return "0"
	}
	return formatSize(int64(*s.p))
}

func (s sizeFlag[T]) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	if T(n) < 0 != (n < 0) || int64(T(n)) != n {
		return fmt.Errorf("%s does not fit", v)
	}
	*s.p = T(n)
	return nil
}

func parseSize(v string) (int64, error) {
	num, shift := strings.TrimSpace(v), uint(0)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, shift = strings.TrimSpace(rest), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want bytes or a number with KiB, MiB, GiB or TiB", v)
	}
	if shift > 0 && (n > (1<<63-1)>>shift || n < -(1<<63)>>shift) {
		return 0, fmt.Errorf("size %q is too large", v)
	}
	return n << shift, nil
}

// formatSize prints n in the largest unit that divides it exactly.
func formatSize(n int64) string {
	for _, u := range sizeUnits[:4] {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
