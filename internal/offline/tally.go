package offline

// tally is what one inbox holds: its entries and their stored bytes (the
// entry values' lengths: header, ids, body). Both quotas read it.
type tally struct {
	n     int32
	bytes int64
}

func (t tally) add(o tally) tally { return tally{t.n + o.n, t.bytes + o.bytes} }

// refusal says whether an inbox holding t may take one more message
// entry of size bytes: nil, ErrInboxFull or ErrInboxBytesFull.
func (c *Config) refusal(t tally, size int) error {
	switch {
	case t.n >= int32(c.Quota):
		return ErrInboxFull
	case t.bytes+int64(size) > c.QuotaBytes:
		return ErrInboxBytesFull
	}
	return nil
}

// ackedBytes sums the stored sizes of acknowledged entries.
func ackedBytes(acked []Acked) int64 {
	var n int64
	for _, a := range acked {
		n += int64(a.Size)
	}
	return n
}
