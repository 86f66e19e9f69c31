package codec

import "testing"

// The frames on the message path must encode and decode without touching
// the heap; the server relies on it to route without garbage.
func TestHotPathNoAlloc(t *testing.T) {
	send := &Send{ID: vecID, To: 2, Body: make([]byte, 100)}
	sendBytes := send.Append(nil)
	deliverBytes := AppendDeliver(nil, 42, &vecID, 1, 0, vecTime, send.Body)
	ack := (&Ack{Seq: 9}).Append(nil)
	buf := make([]byte, 0, 4096)

	cases := map[string]func(){
		"decode SEND": func() {
			var f Send
			_, body, _, _, _ := Split(sendBytes, 0)
			if f.Decode(body) != nil {
				t.Fatal("decode")
			}
		},
		"decode DELIVER": func() {
			var f Deliver
			if f.Decode(deliverBytes[HeaderLen:]) != nil {
				t.Fatal("decode")
			}
		},
		"decode ACK": func() {
			var f Ack
			if f.Decode(ack[HeaderLen:]) != nil {
				t.Fatal("decode")
			}
		},
		"encode SEND":    func() { buf = send.Append(buf[:0]) },
		"encode DELIVER": func() { buf = AppendDeliver(buf[:0], 42, &vecID, 1, 0, vecTime, send.Body) },
		"encode SENT":    func() { buf = (&Sent{ID: vecID, Time: vecTime}).Append(buf[:0]) },
		"encode RECEIPT": func() {
			buf = AppendReceipt(buf[:0], 43, ReceiptDelivered, 2, 0, vecTime, IDList(sendBytes[HeaderLen:HeaderLen+16]))
		},
		"encode ERROR": func() { buf = AppendError(buf[:0], CodeInboxFull, 0, &vecID, "inbox full") },
	}
	for name, fn := range cases {
		if n := testing.AllocsPerRun(200, fn); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
}

func BenchmarkDecodeSend(b *testing.B) {
	frame := (&Send{ID: vecID, To: 2, Body: make([]byte, 100)}).Append(nil)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		var f Send
		_, body, _, _, err := Split(frame, 0)
		if err != nil || f.Decode(body) != nil {
			b.Fatal("decode")
		}
	}
}

func BenchmarkEncodeDeliver(b *testing.B) {
	body := make([]byte, 100)
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(AppendDeliver(nil, 1, &vecID, 1, 0, vecTime, body))))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDeliver(buf[:0], 42, &vecID, 1, 0, vecTime, body)
	}
}

func BenchmarkDecodeDeliver(b *testing.B) {
	frame := AppendDeliver(nil, 42, &vecID, 1, 0, vecTime, make([]byte, 100))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		var f Deliver
		if f.Decode(frame[HeaderLen:]) != nil {
			b.Fatal("decode")
		}
	}
}

func BenchmarkEncodeSend(b *testing.B) {
	f := &Send{ID: vecID, To: 2, Body: make([]byte, 100)}
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(f.Append(nil))))
	b.ReportAllocs()
	for b.Loop() {
		buf = f.Append(buf[:0])
	}
}
