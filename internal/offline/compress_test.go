package offline

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/store"
	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// The compression study behind the choice documented in BENCHMARKS.md.
// It runs with CHATD_COMPRESSION_STUDY=1 (it takes about a minute):
//
//	CHATD_COMPRESSION_STUDY=1 go test ./internal/offline -run TestCompressionStudy -v
//
// Two corpora stand in for real traffic: chat-like text (Zipf-distributed
// words, names, emoji, times; 20-200 bytes) and random bytes of the same
// lengths plus a 16-byte tag, which is what end-to-end encrypted bodies
// look like to the server.

var chatWords = strings.Fields(`i you the a to and it is that ok lol yes no what are on for
in my me so do have be we just not can was this with but at your get go be like know good haha
hey hi love see now how well will time think when one out up u r im dont its thats going back
today tomorrow tonight later soon home work lunch dinner coffee meeting call text send photo
really sure thanks thank please sorry yeah yep nope maybe okay alright cool nice great awesome
😂 ❤️ 👍 🙏 😊 🎉 🔥 😭 😅 🤔 ? ! ... :) :( ;)`)

var chatNames = strings.Fields("alice bob carol dave erin frank grace heidi ivan judy mallory oscar peggy trent")

func chatLine(r *rand.Rand, z *rand.Zipf) []byte {
	n := 20 + r.IntN(180)
	var b strings.Builder
	for b.Len() < n {
		switch r.IntN(20) {
		case 0:
			b.WriteString(chatNames[r.IntN(len(chatNames))])
		case 1:
			fmt.Fprintf(&b, "%d:%02d", 1+r.IntN(12), r.IntN(60))
		default:
			b.WriteString(chatWords[z.Uint64()])
		}
		b.WriteByte(' ')
	}
	return []byte(b.String()[:n])
}

func corpus(seed uint64, n int, random bool) [][]byte {
	r := rand.New(rand.NewPCG(seed, 1))
	z := rand.NewZipf(r, 1.2, 1, uint64(len(chatWords)-1))
	out := make([][]byte, n)
	for i := range out {
		if random {
			b := make([]byte, 36+r.IntN(180))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			out[i] = b
		} else {
			out[i] = chatLine(r, z)
		}
	}
	return out
}

type codecResult struct {
	name     string
	inBytes  int
	outBytes int
	enc, dec time.Duration
}

func TestCompressionStudy(t *testing.T) {
	optIn(t, "CHATD_COMPRESSION_STUDY", "the compression study")
	for _, random := range []bool{false, true} {
		kind := "chat text"
		if random {
			kind = "random (encrypted) bytes"
		}
		train := corpus(1, 20000, random)
		test := corpus(2, 20000, random)
		s2d, err := dict.BuildS2Dict(train, dict.Options{MaxDictSize: 16 << 10, HashBytes: 6})
		if err != nil {
			t.Logf("%s: no s2 dictionary: %v", kind, err)
		}
		zd, err := dict.BuildZstdDict(train, dict.Options{MaxDictSize: 16 << 10, HashBytes: 6, ZstdLevel: zstd.SpeedFastest})
		if err != nil {
			t.Logf("%s: no zstd dictionary: %v", kind, err)
		}
		var results []codecResult
		results = append(results, measure("none", test, func(d, s []byte) []byte { return append(d, s...) },
			func(d, s []byte) ([]byte, error) { return append(d, s...), nil }))
		results = append(results, measure("s2", test, s2.Encode, s2.Decode))
		if s2d != nil {
			sd := s2.NewDict(s2d)
			results = append(results, measure("s2 + 16 KiB dict", test, sd.Encode, sd.Decode))
		}
		if zd != nil {
			enc, _ := zstd.NewWriter(nil, zstd.WithEncoderDict(zd), zstd.WithEncoderLevel(zstd.SpeedFastest),
				zstd.WithEncoderCRC(false), zstd.WithWindowSize(64<<10), zstd.WithEncoderConcurrency(1))
			dec, _ := zstd.NewReader(nil, zstd.WithDecoderDicts(zd), zstd.WithDecoderMaxMemory(1<<20), zstd.WithDecoderConcurrency(1))
			results = append(results, measure("zstd fastest + 16 KiB dict", test,
				func(d, s []byte) []byte { return enc.EncodeAll(s, d) }, func(d, s []byte) ([]byte, error) { return dec.DecodeAll(s, d) }))
			enc.Close()
			dec.Close()
		}
		t.Logf("%s, %d messages, mean %d B:", kind, len(test), results[0].inBytes/len(test))
		for _, r := range results {
			t.Logf("  %-28s %6.1f B/msg  saved %5.1f%%  encode %6.2f us  decode %5.2f us", r.name,
				float64(r.outBytes)/float64(len(test)), 100*(1-float64(r.outBytes)/float64(r.inBytes)),
				float64(r.enc.Microseconds())/float64(len(test)), float64(r.dec.Microseconds())/float64(len(test)))
		}
		for _, setting := range []string{"none", "snappy (pebble default)", "zstd (DBCompressionBalanced)"} {
			bpm := pebbleBytesPerMessage(t, test, setting)
			t.Logf("  pebble blocks, %-30s %6.1f B/msg on disk in sstables (key, 10 B entry header, 32 B message header included)", setting, bpm)
		}
		if s2d != nil {
			sd := s2.NewDict(s2d)
			packed := make([][]byte, len(test))
			for i, m := range test {
				packed[i] = sd.Encode(nil, m)
			}
			bpm := pebbleBytesPerMessage(t, packed, "zstd (DBCompressionBalanced)")
			t.Logf("  s2 + dict bodies in zstd blocks           %6.1f B/msg on disk in sstables", bpm)
		}
	}
}

func measure(name string, msgs [][]byte, enc func(dst, src []byte) []byte, dec func(dst, src []byte) ([]byte, error)) codecResult {
	r := codecResult{name: name}
	out := make([][]byte, len(msgs))
	start := time.Now()
	for i, m := range msgs {
		out[i] = enc(nil, m)
		r.inBytes += len(m)
		r.outBytes += len(out[i])
	}
	r.enc = time.Since(start)
	start = time.Now()
	buf := make([]byte, 0, 1024)
	for _, c := range out {
		buf, _ = dec(buf[:0], c)
	}
	r.dec = time.Since(start)
	return r
}

// pebbleBytesPerMessage stores msgs as inbox entries in a fresh database
// with the given block compression, compacts, and returns sstable bytes
// per message.
func pebbleBytesPerMessage(t *testing.T, msgs [][]byte, setting string) float64 {
	dir := t.TempDir()
	opts := &pebble.Options{FormatMajorVersion: pebble.FormatNewest}
	switch setting {
	case "none":
		opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionNone })
	case "zstd (DBCompressionBalanced)":
		opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionBalanced })
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := db.NewBatch()
	for i, m := range msgs {
		e := Entry{Kind: KindMessage, ID: codec.MsgID{byte(i), byte(i >> 8)}, From: uint64(1 + i%50), Time: uint64(1795000000000 + i*37), Body: m}
		b.Set(inboxKey(nil, uint64(100+i%500), uint64(i+1)), e.encode(nil), nil)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(t.Context(), []byte{store.PrefixInbox}, []byte{store.PrefixInbox + 1}, true); err != nil {
		t.Fatal(err)
	}
	m := db.Metrics()
	var size int64
	for _, l := range m.Levels {
		size += l.TablesSize
	}
	return float64(size) / float64(len(msgs))
}
