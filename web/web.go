// Package web holds chatd's browser client (index.html and its ES
// modules, with the @noble crypto bundled in vendor/) and serves it as
// static files. The page needs no build step at run time: vendor/noble.js
// is committed, rebuilt only by `npm run build` when the pinned @noble
// versions change.
package web

import (
	"embed"
	"io/fs"
	"mime"
	"path"
	"strings"
)

//go:embed index.html style.css app.js codec.js noise.js store.js transport.js vendor/noble.js vendor/noble.LICENSE
//go:embed e2e/bytes.js e2e/xeddsa.js e2e/pqxdh.js e2e/ratchet.js e2e/envelope.js e2e/device.js e2e/senderkey.js
var files embed.FS

// Files is the page and everything it loads.
func Files() fs.FS { return files }

// File returns the file a GET of urlPath asks for ("/" is index.html), its
// content type, and whether there is one. Only the embedded files exist:
// no directory listings, no paths outside the page.
func File(urlPath string) (body []byte, contentType string, ok bool) {
	p := strings.TrimPrefix(path.Clean("/"+urlPath), "/")
	if p == "" {
		p = "index.html"
	}
	b, err := files.ReadFile(p)
	if err != nil {
		return nil, "", false
	}
	ct := mime.TypeByExtension(path.Ext(p))
	switch path.Ext(p) {
	case ".js":
		ct = "text/javascript; charset=utf-8" // module scripts need a JavaScript type
	case ".LICENSE":
		ct = "text/plain; charset=utf-8"
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	return b, ct, true
}
