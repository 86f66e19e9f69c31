package web

import (
	"io/fs"
	"path"
	"regexp"
	"strings"
	"testing"
)

func TestFile(t *testing.T) {
	for _, c := range []struct{ path, ct, contains string }{
		{"/", "text/html", "<script type=\"module\" src=\"app.js\">"},
		{"/index.html", "text/html", "chatd"},
		{"/app.js", "text/javascript", "import"},
		{"/vendor/noble.js", "text/javascript", "chacha"},
		{"/vendor/noble.LICENSE", "text/plain", "MIT License"},
		{"/style.css", "text/css", "body"},
		{"/../app.js", "text/javascript", "import"}, // cleaned, never outside the page
	} {
		b, ct, ok := File(c.path)
		if !ok || !strings.HasPrefix(ct, c.ct) || !strings.Contains(string(b), c.contains) {
			t.Errorf("File(%q) = %d bytes, %q, %v; want %s holding %q", c.path, len(b), ct, ok, c.ct, c.contains)
		}
	}
	for _, p := range []string{"/package.json", "/test/noise.test.js", "/node_modules/x", "/web.go", "/vendor/"} {
		if _, _, ok := File(p); ok {
			t.Errorf("File(%q) served a file that is not part of the page", p)
		}
	}
}

// TestImportsEmbedded catches a module added to web/ but not to the embed
// list: the page would load in a checkout and break when served.
func TestImportsEmbedded(t *testing.T) {
	imp := regexp.MustCompile(`(?m)^(?:import|export)\s[^;]*?from\s+'\./([^']+)'`)
	seen := 0
	err := fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".js") || strings.HasPrefix(p, "vendor/") {
			return err
		}
		b, _ := fs.ReadFile(Files(), p)
		for _, m := range imp.FindAllStringSubmatch(string(b), -1) {
			seen++
			if _, _, ok := File(path.Join(path.Dir(p), m[1])); !ok {
				t.Errorf("%s imports ./%s, which is not embedded (add it to web.go's go:embed)", p, m[1])
			}
		}
		return nil
	})
	if err != nil || seen < 5 {
		t.Fatalf("walked the page's modules: %v, %d imports found", err, seen)
	}
}
