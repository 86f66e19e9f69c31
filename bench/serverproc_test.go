package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestOwnServerAddrs: the bench's own server listens on the ports asked
// for, or on free ones, never on the same port twice.
func TestOwnServerAddrs(t *testing.T) {
	addr, admin, err := ownServerAddrs(&Config{Port: 17420, AdminPort: 17421})
	if err != nil || addr != "127.0.0.1:17420" || admin != "127.0.0.1:17421" {
		t.Fatalf("fixed ports: %q %q %v", addr, admin, err)
	}
	addr, admin, err = ownServerAddrs(&Config{})
	if err != nil || addr == admin || strings.HasSuffix(addr, ":0") || strings.HasSuffix(admin, ":0") {
		t.Fatalf("free ports: %q %q %v", addr, admin, err)
	}
	for _, c := range []Config{{Port: 7420, AdminPort: 7420}, {Port: 70000}, {AdminPort: -1}} {
		if _, _, err := ownServerAddrs(&c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestServerReadFromOutside: with a pid, the server's CPU time and RSS
// come from /proc, with no request to the server (its admin address here
// answers nothing); without one, from its /stats, which then read as 0.
func TestServerReadFromOutside(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	ctx := context.Background()
	tg := &target{admin: "127.0.0.1:1", pid: os.Getpid()}
	cpu, source := tg.cpuClock(ctx)
	if want := fmt.Sprintf("/proc/%d/stat", os.Getpid()); source != want {
		t.Fatalf("source %q, want %q", source, want)
	}
	c0 := cpu()
	for deadline := time.Now().Add(5 * time.Second); cpu() < c0+0.02 && time.Now().Before(deadline); {
	}
	if c := cpu(); c < c0+0.02 {
		t.Errorf("CPU seconds %v after spinning, %v before", c, c0)
	}
	if rss, err := tg.rssNow(ctx); err != nil || rss == 0 {
		t.Errorf("RSS %d, %v", rss, err)
	}
	remote := &target{admin: "127.0.0.1:1"}
	cpu, source = remote.cpuClock(ctx)
	if !strings.Contains(source, "/stats") || cpu() != 0 {
		t.Errorf("no pid: source %q, reading %v", source, cpu())
	}
	if _, err := remote.rssNow(ctx); err == nil {
		t.Error("no pid and no admin endpoint, yet an RSS reading")
	}
}
