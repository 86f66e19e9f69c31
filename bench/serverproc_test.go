package bench

import (
	"strings"
	"testing"
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
